//! `DELETE /auth/mfa/totp`: with the current password and a code (TOTP or recovery), TOTP is
//! removed, and sign-in needs the password only again (204).
//!
//! The code is counted like a sign-in's second step (wrong codes toward the lock and the
//! client's budget) and spent by the very write that removes TOTP.

use lambda_http::Request;

use crate::error::{ApiError, FieldErrors};
use crate::handlers::mfa::second_factor::{check_code, code_accepted, code_field, count_code};
use crate::handlers::{Deps, authenticate, client_ip, password_field, reauthenticate};
use crate::http::{self, Response};
use crate::mail::Mail;
use crate::store::{Limits, Mfa, StoreError, Users};

endpoint!(mfa_totp_disable, [DELETE], Users + Limits + Mfa);

#[tracing::instrument(skip_all)]
async fn mfa_totp_disable<S: Users + Limits + Mfa>(
    deps: &Deps<S>,
    req: &Request,
) -> Result<Response, ApiError> {
    let caller = authenticate(deps, req).await?;
    let body = http::json_body(req)?;
    let mut errors = FieldErrors::new();
    body.reject_unknown(&["current_password", "code"], &mut errors);
    let current = password_field(&body, "current_password", &mut errors);
    let code = code_field(&body, &mut errors);
    let (Some(current), Some(code), true) = (current, code, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    deps.mfa_keys()?;
    reauthenticate(deps, &caller, &current).await?;
    let user = &caller.user;
    let source_ip = client_ip(req);
    if !user.mfa_enabled() {
        // Nothing to disable: no code can be right.
        return Err(ApiError::InvalidCode);
    }
    let counted = count_code(deps, user, &source_ip).await?;
    let Some(factor) = check_code(deps, user, code)? else {
        tracing::warn!(event = "mfa_code_rejected", user_id = %user.id, source_ip = %source_ip);
        return Err(ApiError::InvalidCode);
    };
    match deps.store.disable_totp(user.id, &factor).await {
        Err(StoreError::Conflict) => return Err(ApiError::InvalidCode),
        other => other?,
    }
    code_accepted(deps, user, counted).await;
    deps.send_quietly(
        &Mail::two_step_changed(user.email.as_str(), false),
        "two_step_changed",
    )
    .await;
    tracing::info!(event = "totp_disabled", user_id = %user.id, source_ip = %source_ip);
    Ok(http::no_content())
}
