//! Helpers for handler tests: dependencies over the memory store, and requests built from the
//! same `events/*.json` files that `cargo lambda invoke` and `sam local invoke` use.

use lambda_http::{Body, Request};
use serde_json::Value;

use std::sync::OnceLock;

use crate::config::Config;
use crate::handlers::{self, Deps};
use crate::http::Response;
use crate::jwt::AccessKeys;
use crate::signing::KeyDocument;
use crate::store::Store;
use crate::testing::MemoryStore;

pub const TEST_SECRET: &str = "test-only-secret-9f8e7d6c5b4a39281706f5e4d3c2b1a0";

/// A test configuration; table names come from the environment when set (integration tests).
pub fn config() -> Config {
    config_with(&[])
}

/// The test configuration with some variables set.
pub fn config_with(vars: &[(&str, &str)]) -> Config {
    Config::from_lookup(|name| {
        if let Some((_, value)) = vars.iter().rev().find(|(k, _)| *k == name) {
            return Some((*value).to_owned());
        }
        match name {
            "USERS_TABLE" => Some(std::env::var(name).unwrap_or_else(|_| "users".into())),
            "TOKENS_TABLE" => Some(std::env::var(name).unwrap_or_else(|_| "tokens".into())),
            "SESSIONS_TABLE" => Some(std::env::var(name).unwrap_or_else(|_| "sessions".into())),
            "JWT_SECRET" => Some(TEST_SECRET.into()),
            "HASH_KEY" => Some("hash-test-key-0123456789-abcdefghijklmnop".into()),
            "MFA_KEY" => Some("mfa-test-key-0123456789-abcdefghijklmnop".into()),
            "JWT_ISSUER" => Some("http://127.0.0.1:9000".into()),
            "ALLOWED_ORIGINS" => Some("http://localhost:3000".into()),
            _ => None,
        }
    })
    .expect("test config")
}

pub fn deps() -> Deps<MemoryStore> {
    Deps::new(config(), MemoryStore::new(), access_keys())
}

/// A throwaway key document, made once per test process (an RSA key takes a while to make).
pub fn key_document() -> &'static KeyDocument {
    static DOCUMENT: OnceLock<KeyDocument> = OnceLock::new();
    DOCUMENT.get_or_init(|| KeyDocument::genesis("http://127.0.0.1:9000", 0).expect("test keys"))
}

/// Access token keys that sign and verify, over [`key_document`].
pub fn access_keys() -> AccessKeys {
    AccessKeys::signing(key_document()).expect("test keys")
}

/// The sample event `events/<name>.json`, as Lambda would deliver it.
pub fn event(name: &str) -> Request {
    let path = format!("{}/../events/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let raw = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"));
    lambda_http::request::from_str(&raw).unwrap_or_else(|err| panic!("{path}: {err}"))
}

/// A request with a JSON body (if any) and headers.
pub fn request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Request {
    let mut headers = headers.to_vec();
    match body {
        Some(body) => {
            headers.push(("content-type", "application/json"));
            build(method, path, &headers, Body::from(body.to_string()))
        }
        None => build(method, path, &headers, Body::Empty),
    }
}

/// A request built from an event file with another method, path, headers and body.
fn build(method: &str, path: &str, headers: &[(&str, &str)], body: Body) -> Request {
    let template = event("register");
    let (mut parts, _) = template.into_parts();
    parts.method = method.parse().expect("method");
    parts.uri = path.parse().expect("path");
    parts.headers.remove("content-type");
    for (name, value) in headers {
        parts.headers.insert(
            lambda_http::http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            value.parse().expect("value"),
        );
    }
    Request::from_parts(parts, body)
}

pub fn post(path: &str, body: &Value) -> Request {
    request("POST", path, &[], Some(body))
}

pub fn get(path: &str, headers: &[(&str, &str)]) -> Request {
    request("GET", path, headers, None)
}

/// The request as if API Gateway had seen it come from the client address `ip`.
pub fn from_ip(mut req: Request, ip: &str) -> Request {
    use lambda_http::request::RequestContext;
    match req.extensions_mut().get_mut::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(context)) => context.http.source_ip = Some(ip.into()),
        _ => panic!("the sample events are HTTP API events"),
    }
    req
}

pub fn body_json(response: &Response) -> Value {
    serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null)
}

/// A hash of `password` at weaker Argon2id parameters than the current ones (m=7168, t=5), as
/// an account created under an older policy has (PW-05).
pub fn weak_hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher as _, SaltString, rand_core::OsRng};
    let params = argon2::Params::new(7168, 5, 1, None).expect("valid parameters");
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
        .expect("hashes")
        .to_string()
}

/// The password of the users these helpers register.
pub const PASSWORD: &str = "correct horse battery staple";

/// Registers `alice` (alice@example.com) and returns the token response.
pub async fn alice<S: Store>(deps: &Deps<S>) -> Value {
    register(deps, "alice", "alice@example.com", PASSWORD).await
}

/// Signs in through the handler and returns the token response.
/// Fresh in-memory deps on a clock the test moves, and the clock.
pub fn clocked() -> (
    std::sync::Arc<crate::testing::ManualClock>,
    Deps<MemoryStore>,
) {
    let clock = std::sync::Arc::new(crate::testing::ManualClock::new());
    (clock.clone(), deps().with_clock(clock))
}

/// Fresh in-memory deps with Alice registered: the deps and her token response.
pub async fn with_alice() -> (Deps<MemoryStore>, Value) {
    let deps = deps();
    let tokens = alice(&deps).await;
    (deps, tokens)
}

pub async fn sign_in<S: Store>(deps: &Deps<S>, identifier: &str) -> Value {
    let body = serde_json::json!({"identifier": identifier, "password": PASSWORD});
    body_of(
        handlers::login::handle(deps, post("/auth/login", &body)).await,
        200,
    )
}

/// The body of a handler's answer, which must have `status`.
fn body_of(answer: Result<Response, std::convert::Infallible>, status: u16) -> Value {
    let response = answer.expect("infallible");
    assert_eq!(response.status(), status, "{}", body_json(&response));
    body_json(&response)
}

/// An `Authorization` header value for a token response's access token.
pub fn bearer(tokens: &Value) -> String {
    format!(
        "Bearer {}",
        tokens["access_token"].as_str().unwrap_or_default()
    )
}

/// The seconds of a 429's `Retry-After` (0 when there is none).
pub fn retry_after(response: &Response) -> u64 {
    let value = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok());
    value.and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// A request authenticated by the bearer access token of `tokens` (a token response).
pub fn authed(method: &str, path: &str, tokens: &Value, body: Option<&Value>) -> Request {
    request(method, path, &[("authorization", &bearer(tokens))], body)
}

/// A body-less POST as a browser sends it in cookie mode: with a cookie and an origin.
pub fn cookie_post(path: &str, cookie: &str, origin: Option<&str>) -> Request {
    let mut headers = vec![("cookie", cookie)];
    headers.extend(origin.map(|o| ("origin", o)));
    build("POST", path, &headers, Body::Empty)
}

/// Registers a user through the handler and returns the token response.
pub async fn register<S: Store>(
    deps: &Deps<S>,
    username: &str,
    email: &str,
    password: &str,
) -> Value {
    let body = serde_json::json!({"username": username, "email": email, "password": password});
    body_of(
        handlers::register::handle(deps, post("/auth/register", &body)).await,
        201,
    )
}

/// The claims of a token, unverified (for assertions on tokens a handler just issued).
pub fn token_claims(token: &str) -> Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or_default()
}

/// The session id (`sid`) of a token response.
pub fn sid(tokens: &Value) -> String {
    let claims = token_claims(tokens["refresh_token"].as_str().unwrap_or_default());
    claims["sid"].as_str().unwrap_or_default().to_owned()
}

/// The user id of a token response.
pub fn user_id(tokens: &Value) -> crate::domain::UserId {
    crate::domain::UserId::parse(tokens["user"]["id"].as_str().unwrap_or_default())
        .expect("a token response names its user")
}

/// Asserts that a response clears both token cookies (`Max-Age=0`), as logout and every
/// revocation must (CK-06).
pub fn assert_cookies_cleared(response: &Response) {
    let cleared: Vec<_> = response.headers().get_all("set-cookie").iter().collect();
    assert_eq!(cleared.len(), 2, "both cookies: {cleared:?}");
    assert!(
        cleared
            .iter()
            .all(|c| c.to_str().is_ok_and(|c| c.contains("Max-Age=0"))),
        "{cleared:?}"
    );
}

/// Marks the address of `tokens`' user verified, as its mailed code would (through the store).
pub async fn verify_address<S: Store>(deps: &Deps<S>, tokens: &Value) {
    let id = user_id(tokens);
    let user = deps.store.get_user(id).await.ok().flatten();
    let code = user.and_then(|user| user.verify_code);
    let hash = code.expect("a verification code is pending").hash;
    let now = time::OffsetDateTime::now_utc();
    deps.store
        .verify_email(id, &hash, now)
        .await
        .expect("verified");
}
