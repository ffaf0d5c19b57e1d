//! Who is asking: the user behind an access token, and re-authentication by password.

use lambda_http::Request;

use crate::domain::{Lockout, PasswordAttempt, UserId, UserRecord};
use crate::error::ApiError;
use crate::handlers::sign_in::guard::Guard;
use crate::handlers::{Deps, SignIn};
use crate::http::{self, ACCESS_COOKIE, TokenDelivery};
use crate::jwt::{Claims, TokenUse};
use crate::store::{Limits, LockTarget, Sessions, Users, keys};
use crate::throttle;

/// The user behind a request's access token (bearer header first, then the access cookie).
/// Refuses tokens older than the user's last revocation point and tokens of deleted users
/// (JWT-09). A cookie-authenticated state change must come from an allowed origin (CS-01).
pub(crate) async fn authenticate<S: Users>(
    deps: &Deps<S>,
    req: &Request,
) -> Result<Caller, ApiError> {
    let claims = access_claims(deps, req)?;
    let user = token_user(deps, &claims).await?;
    Ok(Caller::of(user, claims))
}

/// The claims of the request's verified access token.
fn access_claims<S>(deps: &Deps<S>, req: &Request) -> Result<Claims, ApiError> {
    let token = match http::bearer_token(req) {
        Some(token) => token,
        None => {
            let token = http::cookie(req, ACCESS_COOKIE)?.ok_or(ApiError::InvalidToken)?;
            http::check_origin(req, &deps.config.cookies.allowed_origins, true)?;
            token
        }
    };
    deps.tokens()
        .verify(token, TokenUse::Access, deps.now())
        .map_err(|_| ApiError::InvalidToken)
}

/// The user a verified token names, if it still exists and the token carries the user's
/// current revocation point (JWT-09): an older one is revoked, and a newer one was never issued
/// (only a forged token could carry it).
pub(crate) async fn token_user<S: Users>(
    deps: &Deps<S>,
    claims: &Claims,
) -> Result<UserRecord, ApiError> {
    let id = UserId::parse(&claims.sub).ok_or(ApiError::InvalidToken)?;
    let user = deps.store.get_user(id).await?;
    user.filter(|user| claims.ver == user.token_version)
        .ok_or(ApiError::InvalidToken)
}

/// [`authenticate`], for the endpoints that manage sessions or security settings: the token's
/// session must not have been ended (SS-02). An access token outlives a revocation by up to
/// its lifetime; here it stops at once: one strongly consistent read of the session's
/// revocation, made beside the user's.
pub(crate) async fn authenticate_live<S: Users + Sessions>(
    deps: &Deps<S>,
    req: &Request,
) -> Result<Caller, ApiError> {
    let claims = access_claims(deps, req)?;
    let revoked = async { Ok(deps.store.is_revoked(&claims.sid).await?) };
    let (user, revoked) = tokio::try_join!(token_user(deps, &claims), revoked)?;
    if revoked {
        tracing::warn!(event = "ended_session_refused", user_id = %user.id, sid = %claims.sid);
        return Err(ApiError::InvalidToken);
    }
    Ok(Caller::of(user, claims))
}

/// A request's user, and the session its access token belongs to.
pub(crate) struct Caller {
    pub user: UserRecord,
    pub sid: String,
    /// How the session signed in: a session it replaces keeps it.
    pub sign_in: SignIn,
}

impl Caller {
    fn of(user: UserRecord, claims: Claims) -> Self {
        Self {
            user,
            sign_in: SignIn::of(&claims),
            sid: claims.sid,
        }
    }
}

/// How to deliver tokens to an authenticated request: as cookies when it authenticated with
/// the access cookie (a browser), else as it asks.
pub(crate) fn authenticated_delivery(req: &Request) -> Result<TokenDelivery, ApiError> {
    if http::bearer_token(req).is_none() && matches!(http::cookie(req, ACCESS_COOKIE), Ok(Some(_)))
    {
        Ok(TokenDelivery::Cookie)
    } else {
        TokenDelivery::of(req)
    }
}

/// Re-authentication of a signed-in user by password (email change, password change, account
/// deletion). Each session has a lock of its own, reserved before the check like sign-in's: a
/// stolen access token cannot guess the password faster than the sign-in form allows, and no
/// one else's failures (the account's lock) keep the owner from changing a password.
pub(crate) async fn reauthenticate<S: Limits>(
    deps: &Deps<S>,
    caller: &Caller,
    attempt: &PasswordAttempt,
) -> Result<(), ApiError> {
    let target = LockTarget::Counter {
        key: keys::reauth_lock(&caller.sid),
        expires_at: deps.now() + throttle::FAILURE_MEMORY_SECS,
    };
    // Nothing read beforehand: a reservation that meets earlier failures retries on what it met.
    let guard = Guard::reserve(deps, target, Lockout::default(), None, None).await??;
    let user = &caller.user;
    if deps
        .passwords
        .verify(attempt.expose(), Some(&user.password_hash))
        .await
    {
        guard.passed(deps, user).await?;
        return Ok(());
    }
    let (lockout, _) = guard.failed();
    tracing::warn!(event = "reauthentication_failed", user_id = %user.id, failures = lockout.failures);
    Err(ApiError::InvalidCredentials)
}
