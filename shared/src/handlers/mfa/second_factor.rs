//! What the two-step endpoints share: the challenge a sign-in leaves for its second step, the
//! check of a TOTP or recovery code, and the counting of wrong codes.
//!
//! A code is counted before it is checked, like a password: one unit of the client address's
//! budget of wrong codes (`Deps::take_probe`, AB-03) and one reserved failure of the account's
//! second-factor lock (MF-06: one per account, apart from the password's). A right code gives both back; a wrong one leaves them spent, so of any
//! number of racing wrong codes at most the threshold are checked (MF-03).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use lambda_http::http::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::crypto::hex;
use crate::domain::{Lockout, UserRecord};
use crate::error::ApiError;
use crate::handlers::Deps;
use crate::handlers::sign_in::guard::Guard;
use crate::http::{self, Response};
use crate::store::{Limits, LockTarget, Mfa, MfaChallenge, SecondFactor, keys};
use crate::totp;

/// How long a sign-in waits for its second step.
pub(crate) const CHALLENGE_SECS: u64 = 300;
/// Codes one challenge may try.
pub(crate) const CHALLENGE_TRIES: u32 = 5;
/// How long an account's count of wrong second-factor codes is kept after its last change.
const SECOND_FACTOR_LOCK_SECS: u64 = 86_400;
/// The longest code read (a recovery code with separators is 14 characters).
const MAX_CODE_CHARS: usize = 32;

/// The stored name of an `mfa_token`: a hash, so the table never holds a usable token.
pub(crate) fn challenge_hash(mfa_token: &str) -> String {
    hex(&Sha256::digest(mfa_token.as_bytes()))
}

/// The answer to a right password on an account with TOTP: a new challenge (256 random bits,
/// stored only hashed) and `mfa_required`. No tokens, no cookies.
pub(crate) async fn second_step_required<S: Mfa>(
    deps: &Deps<S>,
    user: &UserRecord,
) -> Result<Response, ApiError> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| ApiError::Internal)?;
    let mfa_token = URL_SAFE_NO_PAD.encode(bytes);
    let challenge = MfaChallenge {
        token_hash: challenge_hash(&mfa_token),
        user_id: user.id,
        token_version: user.token_version,
        expires_at: deps.now() + CHALLENGE_SECS,
        tries: 0,
    };
    deps.store.create_challenge(&challenge).await?;
    tracing::info!(event = "mfa_required", user_id = %user.id);
    Ok(http::json(
        StatusCode::OK,
        &json!({
            "mfa_required": true,
            "mfa_token": mfa_token,
            "methods": ["totp", "recovery_code"],
        }),
    ))
}

/// A body's `code` (TOTP or recovery): 1 to `MAX_CODE_CHARS` characters.
pub(crate) fn parse_code(code: &str) -> Result<String, &'static str> {
    match code.chars().count() {
        1..=MAX_CODE_CHARS => Ok(code.to_owned()),
        _ => Err("must be 1 to 32 characters"),
    }
}

/// The factor `code` proves for `user`, if it is right and unspent: a TOTP code of a step
/// after the last accepted one, or an unspent recovery code. Spending it is the caller's
/// conditional write.
pub(crate) fn check_code<S>(
    deps: &Deps<S>,
    user: &UserRecord,
    code: &str,
) -> Result<Option<SecondFactor>, ApiError> {
    let Some(state) = user.totp.as_ref().filter(|totp| totp.enabled) else {
        return Ok(None);
    };
    let keys = deps.mfa_keys()?;
    if totp::is_totp_code(code) {
        let secret = keys
            .open(user.id, &state.sealed_secret)
            .ok_or_else(|| unopenable(user))?;
        let step = totp::matching_step(&secret, code, deps.now(), state.last_step);
        return Ok(step.map(|step| SecondFactor::Totp { step }));
    }
    let Some(canonical) = totp::normalize_recovery_code(code) else {
        return Ok(None);
    };
    let hash = keys.recovery_hash(user.id, &canonical);
    let unspent = state
        .recovery_codes
        .iter()
        .any(|stored| crate::crypto::constant_time_eq(stored.as_bytes(), hash.as_bytes()));
    Ok(unspent.then_some(SecondFactor::RecoveryCode { hash }))
}

/// A sealed secret that does not open: another MFA key than the one that sealed it.
pub(crate) fn unopenable(user: &UserRecord) -> ApiError {
    tracing::error!(event = "totp_secret_unreadable", user_id = %user.id);
    ApiError::Internal
}

/// Counts a code for `user` from `source_ip` before it is checked (the sign-in guard, with a
/// unit of the client's wrong-code budget): 429 when that budget is spent or the account's
/// second step is locked. Wrong codes count in a lock of their own (MF-06), one per account
/// whatever the client: a password reset, which clears the password's failures (and trusts the
/// resetting address), leaves them, so the mailbox alone buys no more guesses at the code.
pub(crate) async fn count_code<S: Limits>(
    deps: &Deps<S>,
    user: &UserRecord,
    source_ip: &str,
) -> Result<Guard, ApiError> {
    let probe = deps.take_probe("wrong-code", source_ip).await?;
    let trust_key = keys::trusted_client(user.id, &deps.client_part(source_ip));
    let key = keys::second_factor_lock(user.id);
    let read = std::slice::from_ref(&key);
    let (_, counters) = deps.store.find_user_id_with_counters(None, read).await?;
    let seen = counters.first().map(Lockout::from).unwrap_or_default();
    let lock = LockTarget::Counter {
        key,
        expires_at: deps.now() + SECOND_FACTOR_LOCK_SECS,
    };
    Guard::reserve(deps, lock, seen, Some(probe), Some(trust_key))
        .await?
        .map_err(|locked| {
            tracing::warn!(event = "mfa_locked", user_id = %user.id, source_ip = %source_ip);
            locked.into()
        })
}

/// A right code, spent: the guard's success (the account's failures forgotten, this address
/// trusted, the budget unit given back). Best effort, after the fact: the code is spent and the
/// answer given, so a failure here is logged and costs the owner at most a tighter lock for a
/// while.
pub(crate) async fn code_accepted<S: Limits>(deps: &Deps<S>, user: &UserRecord, counted: Guard) {
    if let Err(err) = counted.passed(deps, user).await {
        tracing::warn!(event = "mfa_bookkeeping_failed", user_id = %user.id, error = %err);
    }
}
