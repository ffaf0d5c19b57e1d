//! The endpoints. Each handler is generic over the store, so the same code runs against
//! DynamoDB in Lambda and against the in-memory fake in tests. A handler never fails: client
//! errors and outages alike become problem responses here.

use std::convert::Infallible;
use std::sync::Arc;

use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde::Serialize;
use uuid::Uuid;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError};
use crate::domain::{User, UserRecord};
use crate::error::ApiError;
use crate::http::{self, ACCESS_COOKIE, REFRESH_COOKIE, Response, TokenDelivery};
use crate::jwt::{Claims, TokenKeys, TokenUse};
use crate::password::PasswordHasher;
use crate::store::{DynamoStore, UserStore};

pub mod login;
pub mod logout;
pub mod me;
pub mod refresh;
pub mod register;

#[cfg(any(test, feature = "test-util"))]
pub mod testing;

/// Everything a handler needs, built once per cold start.
pub struct Deps<S> {
    pub config: Config,
    pub store: S,
    pub passwords: PasswordHasher,
    pub tokens: TokenKeys,
    pub clock: Arc<dyn Clock>,
}

impl<S: UserStore> Deps<S> {
    pub fn new(config: Config, store: S) -> Self {
        Self {
            tokens: TokenKeys::new(&config),
            passwords: PasswordHasher::new(),
            clock: Arc::new(SystemClock),
            config,
            store,
        }
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn now(&self) -> u64 {
        self.clock.unix().unsigned_abs()
    }
}

impl Deps<DynamoStore> {
    /// Reads the configuration and builds the AWS clients (endpoint, region and credentials come
    /// from the usual AWS environment, `AWS_ENDPOINT_URL` included).
    pub async fn from_env() -> Result<Self, ConfigError> {
        let config = Config::from_env().inspect_err(|err| {
            tracing::error!(error = %err, "refusing to start: invalid configuration");
        })?;
        let sdk = crate::config::aws_sdk_config().await;
        let client = aws_sdk_dynamodb::Client::new(&sdk);
        let store = DynamoStore::new(client, &config.users_table, &config.tokens_table);
        Ok(Self::new(config, store))
    }
}

/// Turns a handler's outcome into the response; only outages and bugs are logged as errors.
fn answer(outcome: Result<Response, ApiError>) -> Result<Response, Infallible> {
    Ok(match outcome {
        Ok(response) => response,
        Err(err) => {
            if err.status().is_server_error() {
                tracing::error!(code = err.code(), "request failed");
            }
            http::problem(&err)
        }
    })
}

/// The token response of API.md, with the token strings left out in cookie mode.
#[derive(Serialize)]
struct TokenBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    access_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    token_type: &'static str,
    expires_in: u64,
    refresh_expires_in: u64,
    user: User,
}

/// Signs a fresh session for `user` (a new `sid`: a sign-in never reuses a session, RT-10) and
/// answers with the token response.
fn new_session<S: UserStore>(
    deps: &Deps<S>,
    user: &UserRecord,
    delivery: TokenDelivery,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let now = deps.now();
    let sid = Uuid::new_v4().to_string();
    let access = deps.tokens.access_claims(user, &sid, now);
    let refresh = deps.tokens.refresh_claims(user, &sid, now, now);
    token_response(deps, user, access, refresh, delivery, status)
}

fn token_response<S: UserStore>(
    deps: &Deps<S>,
    user: &UserRecord,
    access: Claims,
    refresh: Claims,
    delivery: TokenDelivery,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let now = deps.now();
    let expires_in = access.exp.saturating_sub(now);
    let refresh_expires_in = refresh.exp.saturating_sub(now);
    let access = deps.tokens.sign(access).map_err(|_| ApiError::Internal)?;
    let refresh = deps.tokens.sign(refresh).map_err(|_| ApiError::Internal)?;
    let in_body = delivery == TokenDelivery::Body;
    let body = TokenBody {
        access_token: in_body.then_some(access.token.as_str()),
        refresh_token: in_body.then_some(refresh.token.as_str()),
        token_type: "Bearer",
        expires_in,
        refresh_expires_in,
        user: User::from(user),
    };
    let mut response = http::json(status, &body);
    if !in_body {
        let same_site = deps.config.cookie_same_site;
        let access_age = i64::try_from(expires_in).unwrap_or(0);
        let refresh_age = i64::try_from(refresh_expires_in).unwrap_or(0);
        http::set_cookie(
            &mut response,
            ACCESS_COOKIE,
            &access.token,
            "/",
            access_age,
            same_site,
        );
        http::set_cookie(
            &mut response,
            REFRESH_COOKIE,
            &refresh.token,
            "/auth",
            refresh_age,
            same_site,
        );
    }
    Ok(response)
}

/// For sign-in endpoints in cookie mode: a browser request from a foreign origin is refused
/// (login CSRF); without an `Origin` header it is not a browser's cross-site request.
fn check_cookie_mode_origin<S>(
    deps: &Deps<S>,
    req: &Request,
    delivery: TokenDelivery,
) -> Result<(), ApiError> {
    match delivery {
        TokenDelivery::Cookie => http::check_origin(req, &deps.config.allowed_origins, false),
        TokenDelivery::Body => Ok(()),
    }
}

/// A refresh token presented to refresh or logout, and whether it came from the cookie.
struct PresentedRefreshToken {
    token: String,
    from_cookie: bool,
}

/// The body's `refresh_token`, else the refresh cookie. Using the cookie, like any
/// cookie-authenticated state change, needs an allowed `Origin` (CS-01).
fn presented_refresh_token<S>(
    deps: &Deps<S>,
    req: &Request,
    from_body: Option<&str>,
) -> Result<Option<PresentedRefreshToken>, ApiError> {
    if let Some(token) = from_body {
        return Ok(Some(PresentedRefreshToken {
            token: token.to_owned(),
            from_cookie: false,
        }));
    }
    let Some(token) = http::cookie(req, REFRESH_COOKIE) else {
        return Ok(None);
    };
    http::check_origin(req, &deps.config.allowed_origins, true)?;
    Ok(Some(PresentedRefreshToken {
        token: token.to_owned(),
        from_cookie: true,
    }))
}

/// A problem response that also clears the token cookies, for cookie clients whose session
/// has just proved dead.
fn problem_clearing_cookies<S>(deps: &Deps<S>, err: &ApiError) -> Response {
    let mut response = http::problem(err);
    http::clear_token_cookies(&mut response, deps.config.cookie_same_site);
    response
}

/// The user behind a request's access token (bearer header first, then the access cookie).
/// Refuses tokens older than the user's last revocation point and tokens of deleted users
/// (JWT-09). A cookie-authenticated state change must come from an allowed origin (CS-01).
async fn authenticate<S: UserStore>(deps: &Deps<S>, req: &Request) -> Result<UserRecord, ApiError> {
    let token = match http::bearer_token(req) {
        Some(token) => token,
        None => {
            let token = http::cookie(req, ACCESS_COOKIE).ok_or(ApiError::InvalidToken)?;
            http::check_origin(req, &deps.config.allowed_origins, true)?;
            token
        }
    };
    let claims = deps
        .tokens
        .verify(token, TokenUse::Access, deps.now())
        .map_err(|_| ApiError::InvalidToken)?;
    let id = crate::domain::UserId::parse(&claims.sub).ok_or(ApiError::InvalidToken)?;
    let user = deps
        .store
        .get_user(id)
        .await?
        .ok_or(ApiError::InvalidToken)?;
    if claims.ver < user.token_version {
        return Err(ApiError::InvalidToken);
    }
    Ok(user)
}

/// The method check every function makes: API Gateway routes by method, but a function invoked
/// directly (or through a catch-all route) must not act on another verb.
fn require_method(req: &Request, allowed: &[lambda_http::http::Method]) -> Result<(), ApiError> {
    if allowed.contains(req.method()) {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed)
    }
}

/// The client address for security events (LG-06).
fn client_ip(req: &Request) -> String {
    http::source_ip(req).unwrap_or_else(|| "unknown".into())
}
