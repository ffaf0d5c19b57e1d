//! Who is asking: the user behind an access token, and re-authentication by password.

use lambda_http::Request;

use super::Deps;
use crate::domain::{PasswordAttempt, UserRecord};
use crate::error::ApiError;
use crate::http::{self, ACCESS_COOKIE, TokenDelivery};
use crate::jwt::TokenUse;
use crate::store::{Limits, Users};

/// The user behind a request's access token (bearer header first, then the access cookie).
/// Refuses tokens older than the user's last revocation point and tokens of deleted users
/// (JWT-09). A cookie-authenticated state change must come from an allowed origin (CS-01).
pub(super) async fn authenticate<S: Users>(
    deps: &Deps<S>,
    req: &Request,
) -> Result<UserRecord, ApiError> {
    let token = match http::bearer_token(req) {
        Some(token) => token,
        None => {
            let token = http::cookie(req, ACCESS_COOKIE).ok_or(ApiError::InvalidToken)?;
            http::check_origin(req, &deps.config.cookies.allowed_origins, true)?;
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
pub(super) fn authenticated_delivery(req: &Request) -> TokenDelivery {
    if http::bearer_token(req).is_none() && http::cookie(req, ACCESS_COOKIE).is_some() {
        TokenDelivery::Cookie
    } else {
        TokenDelivery::of(req)
    }
}

/// Re-authentication of a signed-in user by password (email change, password change, account
/// deletion). It shares the sign-in lockout: a stolen access token cannot be used to guess the
/// password faster than the sign-in form allows.
pub(super) async fn reauthenticate<S: Limits>(
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
    let threshold = deps.config.limits.lockout_threshold;
    let target = crate::store::LockTarget::User(user.id);
    let lockout = deps
        .store
        .record_login_failure(&target, threshold, now, now)
        .await?;
    tracing::warn!(event = "reauthentication_failed", user_id = %user.id, failures = lockout.failures);
    Err(ApiError::InvalidCredentials)
}
