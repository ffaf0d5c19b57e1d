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
use crate::domain::{PasswordAttempt, User, UserRecord};
use crate::error::ApiError;
use crate::http::{self, ACCESS_COOKIE, REFRESH_COOKIE, Response, TokenDelivery};
use crate::jwt::{Claims, TokenKeys, TokenUse};
use crate::mail::{Mail, MailError, Mailer, SendFuture, SesMailer};
use crate::password::PasswordHasher;
use crate::reset::ResetCodes;
use crate::store::{DynamoStore, UserStore};
use crate::throttle;
use time::OffsetDateTime;

pub mod change_password;
pub mod delete_me;
pub mod forgot_password;
pub mod login;
pub mod logout;
pub mod me;
pub mod refresh;
pub mod register;
pub mod reset_password;
pub mod update_me;

#[cfg(any(test, feature = "test-util"))]
pub mod testing;

/// Everything a handler needs, built once per cold start.
pub struct Deps<S> {
    pub config: Config,
    pub store: S,
    pub passwords: PasswordHasher,
    pub tokens: TokenKeys,
    pub reset_codes: ResetCodes,
    pub mailer: Arc<dyn Mailer>,
    pub clock: Arc<dyn Clock>,
    /// Keys the names of throttling counters, so no address is stored in the clear.
    throttle_key: [u8; 32],
}

impl<S: UserStore> Deps<S> {
    pub fn new(config: Config, store: S) -> Self {
        Self {
            tokens: TokenKeys::new(&config),
            reset_codes: ResetCodes::new(&config),
            throttle_key: config.derived_key(b"throttle"),
            passwords: PasswordHasher::new(),
            mailer: Arc::new(NoMailer),
            clock: Arc::new(SystemClock),
            config,
            store,
        }
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn with_mailer(mut self, mailer: Arc<dyn Mailer>) -> Self {
        self.mailer = mailer;
        self
    }

    fn now(&self) -> u64 {
        self.clock.unix().unsigned_abs()
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.now().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
    }

    fn now_datetime(&self) -> Result<OffsetDateTime, ApiError> {
        OffsetDateTime::from_unix_timestamp(self.clock.unix()).map_err(|_| ApiError::Internal)
    }

    /// A counter name for `value` (an address, an identifier) that does not reveal it.
    fn key_part(&self, value: &str) -> String {
        throttle::key_part(&self.throttle_key, value)
    }

    /// Sends a mail; a failure is logged and otherwise ignored (SES-02).
    async fn send_quietly(&self, mail: &Mail, kind: &'static str) {
        if let Err(err) = self.mailer.send(mail).await {
            tracing::error!(event = "mail_failed", kind, error = %err);
        }
    }
}

impl Deps<DynamoStore> {
    /// Reads the configuration and builds the AWS clients (endpoint, region and credentials come
    /// from the usual AWS environment, `AWS_ENDPOINT_URL` included).
    pub async fn from_env() -> Result<Self, ConfigError> {
        Ok(Self::build().await?.0)
    }

    /// Like [`Deps::from_env`], with a mailer for the functions that send mail: `MAIL_FROM` is
    /// then required.
    pub async fn from_env_with_mail() -> Result<Self, ConfigError> {
        let (deps, sdk) = Self::build().await?;
        let Some(from) = deps.config.mail_from.clone() else {
            tracing::error!("refusing to start: MAIL_FROM is not set");
            return Err(ConfigError::Missing("MAIL_FROM"));
        };
        let mailer = SesMailer::new(aws_sdk_sesv2::Client::new(&sdk), from);
        Ok(deps.with_mailer(Arc::new(mailer)))
    }

    async fn build() -> Result<(Self, aws_config::SdkConfig), ConfigError> {
        let config = Config::from_env().inspect_err(|err| {
            tracing::error!(error = %err, "refusing to start: invalid configuration");
        })?;
        let sdk = crate::config::aws_sdk_config().await;
        let client = aws_sdk_dynamodb::Client::new(&sdk);
        let store = DynamoStore::new(client, &config.users_table, &config.tokens_table);
        Ok((Self::new(config, store), sdk))
    }
}

/// The mailer of functions that send no mail.
struct NoMailer;

impl Mailer for NoMailer {
    fn send<'a>(&'a self, _mail: &'a Mail) -> SendFuture<'a> {
        Box::pin(async { Err(MailError("this function sends no mail".into())) })
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

/// How to deliver tokens to an authenticated request: as cookies when it authenticated with
/// the access cookie (a browser), else as it asks.
fn authenticated_delivery(req: &Request) -> TokenDelivery {
    if http::bearer_token(req).is_none() && http::cookie(req, ACCESS_COOKIE).is_some() {
        TokenDelivery::Cookie
    } else {
        TokenDelivery::of(req)
    }
}

/// Re-authentication of a signed-in user by password (email change, password change, account
/// deletion). It shares the sign-in lockout: a stolen access token cannot be used to guess the
/// password faster than the sign-in form allows.
async fn reauthenticate<S: UserStore>(
    deps: &Deps<S>,
    user: &UserRecord,
    attempt: &PasswordAttempt,
) -> Result<(), ApiError> {
    let now = deps.now();
    if user.lockout.locked_until > now {
        return Err(ApiError::TooManyAttempts {
            retry_after_secs: user.lockout.locked_until - now,
        });
    }
    if deps
        .passwords
        .verify(attempt.expose(), Some(&user.password_hash))
        .await
    {
        if user.lockout.failures > 0 {
            deps.store.clear_login_failures(user.id).await?;
        }
        return Ok(());
    }
    let threshold = deps.config.login_lockout_threshold;
    let target = crate::store::LockTarget::User(user.id);
    let lockout = deps
        .store
        .record_login_failure(&target, threshold, now, now)
        .await?;
    tracing::warn!(event = "reauthentication_failed", user_id = %user.id, failures = lockout.failures);
    Err(ApiError::InvalidCredentials)
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
