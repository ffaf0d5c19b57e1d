//! `GET /.well-known/openid-configuration` and `GET /.well-known/jwks.json`: what other services
//! (and API Gateway's JWT authorizer) need to verify access tokens, and nothing secret. Both
//! functions read only the published keys: no `JWT_SECRET`, no private key.
//!
//! The published keys are read at start and again when the copy is older than [`REFRESH`], so
//! a key listed by a rotation is served within minutes while the answers stay cacheable.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lambda_http::Request;
use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use serde_json::json;

use crate::clock::{Clock, SystemClock};
use crate::config::{ConfigError, PublicKeySettings};
use crate::error::ApiError;
use crate::http::{self, Response};
use crate::signing::PublicKeys;
use crate::store::Published;

/// How long a function keeps its copy of the published keys, and clients their answers
/// (`PUBLIC_KEYS_MAX_AGE_SECONDS` changes it, for tests of rotation).
pub const REFRESH: Duration = crate::config::PUBLIC_KEYS_REFRESH;

/// The path of the JWKS, below the issuer.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// What both endpoints need: the published keys (cached) and the configured issuer, if any.
/// The document a function serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    Discovery,
    Jwks,
}

/// The whole life of the function that serves `document`: logging, its settings (refusing to
/// start without them), then every request.
pub async fn serve(document: Document) -> Result<(), lambda_http::Error> {
    crate::logging::init();
    let well_known = WellKnown::from_env().await?;
    let well_known = &well_known;
    lambda_http::run(lambda_http::service_fn(move |req| async move {
        Ok::<_, lambda_http::Error>(match document {
            Document::Discovery => well_known.discovery(req).await,
            Document::Jwks => well_known.jwks(req).await,
        })
    }))
    .await
}

pub struct WellKnown<S> {
    store: S,
    /// `JWT_ISSUER` when set; else the issuer the published keys name.
    issuer: Option<String>,
    max_age: Duration,
    clock: Arc<dyn Clock>,
    cached: Mutex<Option<(u64, PublicKeys)>>,
}

impl WellKnown<crate::store::DynamoStore> {
    /// Reads its settings ([`PublicKeySettings`]: the users table, where the keys are
    /// published, is required) and builds the DynamoDB client: nothing secret.
    pub async fn from_env() -> Result<Self, ConfigError> {
        let settings = PublicKeySettings::from_lookup(|name| std::env::var(name).ok())
            .inspect_err(|err| tracing::error!(error = %err, "refusing to start"))?;
        let sdk = crate::aws::sdk_config().await;
        let client = aws_sdk_dynamodb::Client::new(&sdk);
        // These functions touch no tokens table.
        let store = crate::store::DynamoStore::new(client, settings.users_table, "");
        Ok(Self {
            max_age: settings.max_age,
            ..Self::new(store, settings.issuer)
        })
    }
}

impl<S: Published> WellKnown<S> {
    pub fn new(store: S, issuer: Option<String>) -> Self {
        Self {
            store,
            issuer,
            max_age: REFRESH,
            clock: Arc::new(SystemClock),
            cached: Mutex::new(None),
        }
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    async fn keys(&self) -> Result<PublicKeys, ApiError> {
        let now = self.clock.unix().unsigned_abs();
        let fresh = |fetched: u64| now < fetched + self.max_age.as_secs();
        if let Some((fetched, keys)) = self.lock().as_ref()
            && fresh(*fetched)
        {
            return Ok(keys.clone());
        }
        let keys = self
            .store
            .published_keys()
            .await
            .map_err(|err| {
                tracing::error!(error = %err, "reading the published keys failed");
                ApiError::Unavailable
            })?
            .ok_or_else(|| {
                tracing::error!("no keys are published: has the key rotation run?");
                ApiError::Unavailable
            })?;
        *self.lock() = Some((now, keys.clone()));
        Ok(keys)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(u64, PublicKeys)>> {
        self.cached
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The discovery document (OpenID Connect Discovery 1.0, the fields a verifier uses).
    pub async fn discovery(&self, req: Request) -> Response {
        let outcome = async {
            require_get(&req)?;
            let keys = self.keys().await?;
            let issuer = self.issuer.clone().unwrap_or(keys.issuer);
            Ok(self.cacheable(json!({
                "issuer": issuer,
                "jwks_uri": format!("{}{JWKS_PATH}", issuer.trim_end_matches('/')),
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
                "subject_types_supported": ["public"],
                "response_types_supported": ["token"],
                "claims_supported": [
                    "iss", "aud", "sub", "iat", "exp", "jti", "sid", "scope",
                    "email_verified", "amr", "token_use"
                ],
            })))
        };
        answer(outcome.await)
    }

    /// The JWKS: the public half of every listed key.
    pub async fn jwks(&self, req: Request) -> Response {
        let outcome = async {
            require_get(&req)?;
            Ok(self.cacheable(self.keys().await?.jwks()))
        };
        answer(outcome.await)
    }
}

impl<S> WellKnown<S> {
    /// A JSON answer that clients may cache, unlike every other answer of the service.
    fn cacheable(&self, body: serde_json::Value) -> Response {
        let mut response = http::json(StatusCode::OK, &body);
        let max_age = format!("public, max-age={}", self.max_age.as_secs());
        if let Ok(value) = HeaderValue::from_str(&max_age) {
            response.headers_mut().insert(header::CACHE_CONTROL, value);
        }
        response
    }
}

fn require_get(req: &Request) -> Result<(), ApiError> {
    crate::handlers::require_method(req, &[Method::GET, Method::HEAD])
}

fn answer(outcome: Result<Response, ApiError>) -> Response {
    match crate::handlers::answer(outcome) {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Published;
    use crate::testing::{ManualClock, MemoryStore, body_json, event, key_document};

    async fn well_known(issuer: Option<&str>) -> (WellKnown<MemoryStore>, Arc<ManualClock>) {
        let store = MemoryStore::new();
        store
            .publish_keys(&key_document().public().expect("public"))
            .await
            .expect("published");
        let clock = Arc::new(ManualClock::new());
        let wk = WellKnown::new(store, issuer.map(str::to_owned)).with_clock(clock.clone());
        (wk, clock)
    }

    /// `document` as a fresh function serves its sample event: 200, cacheable for 5 minutes.
    async fn served(document: Document) -> Response {
        let (wk, _) = well_known(None).await;
        let response = match document {
            Document::Discovery => wk.discovery(event("discovery")).await,
            Document::Jwks => wk.jwks(event("jwks")).await,
        };
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["cache-control"], "public, max-age=300");
        response
    }

    #[tokio::test]
    async fn discovery_names_the_issuer_and_the_jwks_beneath_it() {
        let response = served(Document::Discovery).await;
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        let body = body_json(&response);
        assert_eq!(body["issuer"], "http://127.0.0.1:9000");
        assert_eq!(
            body["jwks_uri"],
            "http://127.0.0.1:9000/.well-known/jwks.json"
        );
        assert_eq!(
            body["id_token_signing_alg_values_supported"],
            json!(["RS256"])
        );

        let (configured, _) = well_known(Some("https://auth.example.com")).await;
        let body = body_json(&configured.discovery(event("discovery")).await);
        assert_eq!(body["issuer"], "https://auth.example.com");
        assert_eq!(
            body["jwks_uri"],
            "https://auth.example.com/.well-known/jwks.json"
        );
    }

    #[tokio::test]
    async fn the_jwks_lists_public_rsa_keys_only() {
        let response = served(Document::Jwks).await;
        let body = body_json(&response);
        let keys = body["keys"].as_array().expect("keys");
        assert_eq!(keys.len(), 2);
        for key in keys {
            let mut names: Vec<_> = key.as_object().expect("object").keys().cloned().collect();
            names.sort();
            assert_eq!(names, ["alg", "e", "kid", "kty", "n", "use"]);
            assert_eq!(
                (
                    key["kty"].as_str(),
                    key["alg"].as_str(),
                    key["use"].as_str()
                ),
                (Some("RSA"), Some("RS256"), Some("sig"))
            );
        }
    }

    #[tokio::test]
    async fn a_newly_published_key_is_served_once_the_copy_is_five_minutes_old() {
        let (wk, clock) = well_known(None).await;
        let before = body_json(&wk.jwks(event("jwks")).await);
        let rotated = key_document()
            .rotated(
                "http://127.0.0.1:9000",
                10_000,
                crate::rotation::rules(Duration::ZERO, Duration::from_secs(600), REFRESH),
            )
            .expect("keys")
            .expect("allowed");
        wk.store
            .publish_keys(&rotated.public().expect("public"))
            .await
            .expect("published");
        clock.advance(time::Duration::seconds(299));
        assert_eq!(body_json(&wk.jwks(event("jwks")).await), before);
        clock.advance(time::Duration::seconds(1));
        let after = body_json(&wk.jwks(event("jwks")).await);
        assert_eq!(after["keys"].as_array().map(Vec::len), Some(3));
    }

    #[tokio::test]
    async fn no_published_keys_is_a_503_and_other_methods_a_405() {
        let wk = WellKnown::new(MemoryStore::new(), None);
        let response = wk.jwks(event("jwks")).await;
        assert_eq!(response.status(), 503);
        assert_eq!(body_json(&response)["code"], "service_unavailable");
        let (wk, _) = well_known(None).await;
        let mut post = event("jwks");
        *post.method_mut() = Method::POST;
        assert_eq!(wk.jwks(post).await.status(), 405);
    }
}
