//! `POST /auth/mfa/verify`: the second step of a sign-in. The `mfa_token` a right password
//! got (`login`) and a TOTP or recovery code become the token response, in cookie mode when
//! asked, with `amr` `["pwd", "otp"]`.
//!
//! The challenge counts each try before the code is checked and dies after 5 (MF-03); the
//! challenge's end, the code's spending and the session's record are one transaction, so a
//! code is accepted once, whatever races (MF-01, MF-02). A bad, used, expired or exhausted
//! `mfa_token` is 401 `invalid_token`; a wrong or spent code, 400 `invalid_code`.

use lambda_http::Request;
use lambda_http::http::StatusCode;

use crate::error::{ApiError, FieldErrors};
use crate::handlers::mfa::second_factor::{
    CHALLENGE_TRIES, challenge_hash, check_code, code_accepted, code_field, count_code,
};
use crate::handlers::{
    Deps, SignIn, begin_session, check_cookie_mode_origin, client_ip, session_tokens,
};
use crate::http::{self, Response, TokenDelivery};
use crate::store::{Limits, Mfa, Sessions, StoreError, Users};

endpoint!(mfa_verify, [POST], Users + Sessions + Limits + Mfa);

/// The longest `mfa_token` read (one is 43 characters).
const MAX_TOKEN_CHARS: usize = 128;

#[tracing::instrument(skip_all)]
async fn mfa_verify<S: Users + Sessions + Limits + Mfa>(
    deps: &Deps<S>,
    req: &Request,
) -> Result<Response, ApiError> {
    let delivery = TokenDelivery::of(req);
    check_cookie_mode_origin(deps, req, delivery)?;
    let body = http::json_body(req)?;
    let mut errors = FieldErrors::new();
    body.reject_unknown(&["mfa_token", "code"], &mut errors);
    let token = body.required_str("mfa_token", &mut errors);
    let code = code_field(&body, &mut errors);
    let (Some(token), Some(code), true) = (token, code, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    if token.is_empty() || token.len() > MAX_TOKEN_CHARS {
        return Err(ApiError::InvalidToken);
    }
    deps.mfa_keys()?;

    let source_ip = client_ip(req);
    let Some(challenge) = deps
        .store
        .try_challenge(&challenge_hash(token), CHALLENGE_TRIES, deps.now())
        .await?
    else {
        tracing::warn!(event = "mfa_token_rejected", source_ip = %source_ip);
        return Err(ApiError::InvalidToken);
    };
    let user = deps
        .store
        .get_user(challenge.user_id)
        .await?
        // TOTP still on, and no revocation point since the password step.
        .filter(|user| user.mfa_enabled() && user.token_version == challenge.token_version)
        .ok_or(ApiError::InvalidToken)?;
    let counted = count_code(deps, &user, &source_ip).await?;
    let Some(factor) = check_code(deps, &user, code)? else {
        tracing::warn!(event = "mfa_code_rejected", user_id = %user.id, tries = challenge.tries, source_ip = %source_ip);
        return Err(ApiError::InvalidCode);
    };
    let session = begin_session(deps, req, &user);
    match deps
        .store
        .complete_challenge(&challenge, &factor, &session)
        .await
    {
        // A racing request spent the code (or the challenge) first.
        Err(StoreError::Conflict) => {
            tracing::warn!(event = "mfa_code_replayed", user_id = %user.id, source_ip = %source_ip);
            return Err(ApiError::InvalidCode);
        }
        other => other?,
    }
    code_accepted(deps, &user, counted).await;
    tracing::info!(event = "login_succeeded", user_id = %user.id, sid = %session.sid, second_factor = true, source_ip = %source_ip);
    session_tokens(
        deps,
        &user,
        &session,
        SignIn::TwoStep,
        delivery,
        StatusCode::OK,
    )
}
