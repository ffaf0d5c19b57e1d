//! `POST /auth/mfa/totp/setup`: with the current password, a new TOTP secret for any
//! authenticator app, pending until a first code confirms it (`/auth/mfa/totp/confirm`).
//!
//! The secret is returned this once, and stored only sealed (MF-02). Setting up again before
//! confirming replaces the pending secret; with TOTP enabled, 409 `mfa_already_enabled`.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde_json::json;

use crate::error::{ApiError, FieldErrors};
use crate::handlers::{Deps, authenticate, client_ip, password_field, reauthenticate};
use crate::http::{self, Response};
use crate::store::{Limits, Mfa, StoreError, Users};
use crate::totp;

endpoint!(mfa_totp_setup, [POST], Users + Limits + Mfa);

#[tracing::instrument(skip_all)]
async fn mfa_totp_setup<S: Users + Limits + Mfa>(
    deps: &Deps<S>,
    req: &Request,
) -> Result<Response, ApiError> {
    let caller = authenticate(deps, req).await?;
    let body = http::json_body(req)?;
    let mut errors = FieldErrors::new();
    body.reject_unknown(&["current_password"], &mut errors);
    let current = password_field(&body, "current_password", &mut errors);
    let (Some(current), true) = (current, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let keys = deps.mfa_keys()?;
    reauthenticate(deps, &caller, &current).await?;
    let user = &caller.user;
    if user.mfa_enabled() {
        return Err(ApiError::MfaAlreadyEnabled);
    }

    let secret = totp::new_secret();
    match deps
        .store
        .begin_totp(user.id, &keys.seal(user.id, &secret))
        .await
    {
        Err(StoreError::Conflict) => return Err(ApiError::MfaAlreadyEnabled),
        other => other?,
    }
    tracing::info!(event = "totp_setup_started", user_id = %user.id, source_ip = %client_ip(req));
    let encoded = totp::base32(&secret);
    let uri = totp::otpauth_uri(&deps.config.mfa.issuer, user.username.as_str(), &encoded);
    Ok(http::json(
        StatusCode::OK,
        &json!({"secret": encoded, "otpauth_uri": uri}),
    ))
}
