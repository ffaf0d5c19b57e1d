//! `POST /auth/mfa/totp/confirm`: a first code from the authenticator app turns the pending
//! secret on, and the answer carries the 10 recovery codes, shown this once and stored only
//! as keyed hashes (MF-02). From then on, sign-in asks for a second factor.
//!
//! The confirming code's step is the first accepted one (MF-01). Each code is counted before
//! it is checked, in the client's budget of wrong codes (AB-03) and in the account's second-step
//! lock (MF-06), as sign-in's second step counts them. A pending secret is void
//! [`super::TOTP_SETUP_SECS`] after its setup.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use secrecy::ExposeSecret;
use serde_json::json;

use crate::error::ApiError;
use crate::handlers::codes::{CodeKind, TWO_STEP_UNDO_DAYS};
use crate::handlers::mfa::TwoStepStore;
use crate::handlers::mfa::second_factor::{code_accepted, count_code, parse_code, unopenable};
use crate::handlers::{Deps, Reply, authenticate_live, client_ip};
use crate::http;
use crate::mail::Mail;
use crate::mailed_codes;
use crate::store::StoreError;
use crate::totp;

endpoint!(mfa_totp_confirm, [POST], TwoStepStore);

async fn mfa_totp_confirm<S: TwoStepStore>(deps: &Deps<S>, req: &Request) -> Reply {
    let caller = authenticate_live(deps, req).await?;
    let code = http::read_with(req, |body| body.required("code", parse_code))?;
    let keys = deps.mfa_keys()?;
    let user = &caller.user;
    if !user.email_verified {
        return Err(ApiError::EmailNotVerified);
    }
    if user.mfa_enabled() {
        return Err(ApiError::MfaAlreadyEnabled);
    }
    let source_ip = client_ip(req);
    let counted = count_code(deps, user, &source_ip).await?;
    let now = deps.now();
    let pending = (user.totp.as_ref())
        .filter(|pending| pending.pending_until.is_some_and(|until| now < until));
    let Some(pending) = pending else {
        return Err(ApiError::InvalidCode);
    };
    let secret = keys
        .open(user.id, &pending.sealed_secret)
        .ok_or_else(|| unopenable(user))?;
    let step = totp::is_totp_code(&code)
        .then(|| totp::matching_step(&secret, &code, deps.now(), None))
        .flatten();
    let Some(step) = step else {
        tracing::warn!(event = "totp_confirm_rejected", user_id = %user.id, source_ip = %source_ip);
        return Err(ApiError::InvalidCode);
    };

    let recovery_codes = totp::new_recovery_codes();
    let hashes: Vec<String> = recovery_codes
        .iter()
        .map(|code| {
            let canonical = totp::normalize_recovery_code(code.expose_secret())
                .unwrap_or_else(|| unreachable!("a new recovery code is canonical"));
            keys.recovery_hash(user.id, &canonical)
        })
        .collect();
    // The mailbox's way back (MF-07): a code that turns TOTP off again, mailed with the notice.
    let (undo, undo_stored) = CodeKind::TwoStepUndo.issue(deps, user.id, &user.email);
    match deps
        .store
        .enable_totp(user.id, &pending.sealed_secret, step, &hashes, &undo_stored)
        .await
    {
        // Another setup replaced the secret, or another confirmation won.
        Err(StoreError::Conflict) => return Err(ApiError::InvalidCode),
        other => other?,
    }
    code_accepted(deps, user, counted).await;
    deps.send_quietly(
        &Mail::two_step_on(
            user.email.as_str(),
            mailed_codes::expose(&undo),
            TWO_STEP_UNDO_DAYS,
        ),
        "two_step_changed",
    )
    .await;
    tracing::info!(event = "totp_enabled", user_id = %user.id, source_ip = %source_ip);
    let shown: Vec<&str> = recovery_codes.iter().map(|c| c.expose_secret()).collect();
    Ok(http::json(
        StatusCode::OK,
        &json!({"recovery_codes": shown}),
    ))
}
