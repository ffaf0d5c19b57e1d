//! Sessions as the client sees them: a new session's tokens, the token response in body or
//! cookie mode, and the refresh token a request presents.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use lambda_http::http::header::USER_AGENT;
use serde::Serialize;
use uuid::Uuid;

use crate::domain::{User, UserRecord};
use crate::error::ApiError;
use crate::handlers::Deps;
use crate::http::{self, ACCESS_COOKIE, REFRESH_COOKIE, Response, TokenDelivery};
use crate::jwt::Claims;
use crate::store::SessionRecord;

/// The token response (`TokenResponse` in openapi.yaml), with the token strings left out in
/// cookie mode.
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

/// The longest `User-Agent` a session keeps (in bytes, cut at a character boundary).
const MAX_USER_AGENT_BYTES: usize = 256;

/// The record of a session that `user` (as it is once the sign-in is written) begins now with
/// this request: a new `sid` (a sign-in never reuses a session, RT-10), its absolute expiry,
/// the `User-Agent` truncated, and the client address only as a keyed hash. The sign-in stores
/// it with its own write, then answers with `session_tokens`.
pub(crate) fn begin_session<S>(deps: &Deps<S>, req: &Request, user: &UserRecord) -> SessionRecord {
    let now = deps.now();
    let sid = Uuid::new_v4().to_string();
    let expires_at = deps.tokens().refresh_claims(user, &sid, now, now).exp;
    SessionRecord {
        user_id: user.id,
        sid,
        created_at: now,
        last_used_at: now,
        expires_at,
        token_version: user.token_version,
        user_agent: user_agent(req),
        client: http::source_ip(req).map(|ip| deps.client_part(&ip)),
    }
}

/// The request's `User-Agent`, truncated to `MAX_USER_AGENT_BYTES`; `None` when absent, empty
/// or not text.
pub(crate) fn user_agent(req: &Request) -> Option<String> {
    let agent = req.headers().get(USER_AGENT)?.to_str().ok()?.trim();
    let mut end = agent.len().min(MAX_USER_AGENT_BYTES);
    while !agent.is_char_boundary(end) {
        end -= 1;
    }
    (end > 0).then(|| agent[..end].to_owned())
}

/// How a session's user signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignIn {
    /// With the password alone (`amr` `["pwd"]`).
    Password,
    /// With the password, then a TOTP or recovery code (`amr` `["pwd", "otp"]`).
    TwoStep,
}

impl SignIn {
    /// How the session of a token signed in, from its `amr`.
    pub(crate) fn of(claims: &Claims) -> Self {
        if claims.has_second_factor() {
            Self::TwoStep
        } else {
            Self::Password
        }
    }

    /// The claims of a new token of the session, saying how it signed in.
    pub(crate) fn mark(self, claims: Claims) -> Claims {
        match self {
            Self::TwoStep => claims.with_second_factor(),
            Self::Password => claims,
        }
    }
}

/// The token response of a session `begin_session` made, once its record is stored.
pub(crate) fn session_tokens<S>(
    deps: &Deps<S>,
    user: &UserRecord,
    session: &SessionRecord,
    sign_in: SignIn,
    delivery: TokenDelivery,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let now = deps.now();
    let access = deps.tokens().access_claims(user, &session.sid, now);
    let refresh = deps
        .tokens()
        .refresh_claims(user, &session.sid, session.created_at, now);
    let (access, refresh) = (sign_in.mark(access), sign_in.mark(refresh));
    token_response(deps, user, access, refresh, delivery, status)
}

pub(crate) fn token_response<S>(
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
    let access = deps.tokens().sign(access).map_err(|_| ApiError::Internal)?;
    let refresh = deps
        .tokens()
        .sign(refresh)
        .map_err(|_| ApiError::Internal)?;
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
        let same_site = deps.config.cookies.same_site;
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
pub(crate) fn check_cookie_mode_origin<S>(
    deps: &Deps<S>,
    req: &Request,
    delivery: TokenDelivery,
) -> Result<(), ApiError> {
    match delivery {
        TokenDelivery::Cookie => {
            http::check_origin(req, &deps.config.cookies.allowed_origins, false)
        }
        TokenDelivery::Body => Ok(()),
    }
}

/// A refresh token presented to refresh or logout, and whether it came from the cookie.
pub(crate) struct PresentedRefreshToken {
    pub(crate) token: String,
    pub(crate) from_cookie: bool,
}

/// The body's `refresh_token`, else the refresh cookie. Using the cookie, like any
/// cookie-authenticated state change, needs an allowed `Origin` (CS-01).
pub(crate) fn presented_refresh_token<S>(
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
    let Some(token) = http::cookie(req, REFRESH_COOKIE)? else {
        return Ok(None);
    };
    http::check_origin(req, &deps.config.cookies.allowed_origins, true)?;
    Ok(Some(PresentedRefreshToken {
        token: token.to_owned(),
        from_cookie: true,
    }))
}

/// A problem response that also clears the token cookies, for cookie clients whose session
/// has just proved dead.
pub(crate) fn problem_clearing_cookies<S>(deps: &Deps<S>, err: &ApiError) -> Response {
    let mut response = http::problem(err);
    http::clear_token_cookies(&mut response, deps.config.cookies.same_site);
    response
}
