//! What the two-step endpoints share: the challenge a sign-in leaves for its second step, the
//! check of a TOTP or recovery code, and the counting of wrong codes.
//!
//! A code is counted before it is checked, like a password: one unit of the client address's
//! budget of wrong codes (`Deps::take_probe`, AB-03) and one reserved failure of the account's
//! lock (the lock sign-in uses for this address, so an address the owner used keeps a lock of
//! its own). A right code gives both back; a wrong one leaves them spent, so of any number of
//! racing wrong codes at most the threshold are checked (MF-03).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use lambda_http::http::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::crypto::hex;
use crate::domain::{Lockout, UserRecord};
use crate::error::{ApiError, FieldErrors};
use crate::handlers::Deps;
use crate::http::{self, JsonObject, Response};
use crate::store::{Attempt, Limits, LockTarget, Mfa, MfaChallenge, SecondFactor, keys};
use crate::throttle::{self, Quota};
use crate::totp;

/// How long a sign-in waits for its second step.
pub(crate) const CHALLENGE_SECS: u64 = 300;
/// Codes one challenge may try.
pub(crate) const CHALLENGE_TRIES: u32 = 5;
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

/// The body's `code`: a string of at most `MAX_CODE_CHARS` characters.
pub(crate) fn code_field<'b>(body: &'b JsonObject, errors: &mut FieldErrors) -> Option<&'b str> {
    let code = body.required_str("code", errors)?;
    if code.is_empty() || code.chars().count() > MAX_CODE_CHARS {
        errors.insert("code".into(), "must be 1 to 32 characters".into());
        return None;
    }
    Some(code)
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

/// A code about to be checked, counted first (see the module's notes).
pub(crate) struct CountedCode {
    probe: Quota,
    lock: LockTarget,
    trust_key: String,
}

/// Counts a code for `user` from `source_ip` before it is checked: 429 when the client's
/// wrong-code budget is spent or the account (for this address) is locked.
pub(crate) async fn count_code<S: Limits>(
    deps: &Deps<S>,
    user: &UserRecord,
    source_ip: &str,
) -> Result<CountedCode, ApiError> {
    let probe = deps.take_probe("wrong-code", source_ip).await?;
    let trust_key = keys::trusted_client(user.id, &deps.key_part(source_ip));
    let (_, trust) = deps
        .store
        .find_user_id_with_counters(None, std::slice::from_ref(&trust_key))
        .await?;
    let (lock, seen) = match trust.first() {
        Some(trust) => (LockTarget::Trusted(trust_key.clone()), Lockout::from(trust)),
        None => (LockTarget::User(user.id), user.lockout),
    };
    let threshold = deps.config.limits.lockout_threshold;
    let now_ms = deps.now_ms();
    match deps
        .store
        .reserve_attempt(&lock, seen, threshold, now_ms)
        .await?
    {
        Attempt::Admitted { .. } => Ok(CountedCode {
            probe,
            lock,
            trust_key,
        }),
        Attempt::Locked { until_ms } => {
            tracing::warn!(event = "mfa_locked", user_id = %user.id, source_ip = %source_ip);
            Err(ApiError::TooManyAttempts {
                retry_after_secs: throttle::retry_after_secs(until_ms, now_ms),
            })
        }
    }
}

/// A right code, spent: the account's failures are forgotten (a right password alone on an
/// account with TOTP forgets none), this address is trusted as the owner's, and the unit of the
/// client's budget is given back. Best effort, after the fact: the code is spent and the answer
/// given, so a failure here is logged and costs the owner at most a tighter lock for a while.
pub(crate) async fn code_accepted<S: Limits>(
    deps: &Deps<S>,
    user: &UserRecord,
    counted: CountedCode,
) {
    let account = LockTarget::User(user.id);
    let clear_account = async {
        if counted.lock == account || user.lockout.failures > 0 {
            deps.store.clear_attempts(&account).await
        } else {
            Ok(())
        }
    };
    // Trusting the address also forgets its own failures.
    let trusted_until = deps.now() + throttle::TRUSTED_CLIENT_SECS;
    let cleared = tokio::try_join!(
        clear_account,
        deps.store.trust_client(&counted.trust_key, trusted_until),
    );
    if let Err(err) = cleared {
        tracing::warn!(event = "mfa_bookkeeping_failed", user_id = %user.id, error = %err);
    }
    deps.refund_probe(&counted.probe).await;
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value, json};
    use time::Duration;

    use super::*;
    use crate::handlers::{
        login, me, mfa_totp_confirm, mfa_totp_disable, mfa_totp_setup, mfa_verify, refresh,
        reset_password,
    };
    use crate::store::{Codes, Users};
    use crate::testing::{
        ManualClock, MemoryStore, PASSWORD, alice, assert_placeholder_token_refused, authed,
        body_json, deps, event, from_ip, post, retry_after, token_claims, user_id,
    };

    type TestDeps = Deps<MemoryStore>;

    async fn call(
        handler: impl AsyncFnOnce(
            &TestDeps,
            lambda_http::Request,
        ) -> Result<Response, std::convert::Infallible>,
        deps: &TestDeps,
        req: lambda_http::Request,
    ) -> (u16, Value) {
        let response = handler(deps, req).await.expect("infallible");
        let status = response.status().as_u16();
        let body = if response.body().is_empty() {
            Value::Null
        } else {
            body_json(&response)
        };
        (status, body)
    }

    /// The code of the user's authenticator at `offset` steps from now.
    async fn code(deps: &TestDeps, tokens: &Value, offset: i64) -> String {
        let user = deps
            .store
            .get_user(user_id(tokens))
            .await
            .ok()
            .flatten()
            .expect("the user");
        let sealed = user.totp.expect("a TOTP secret").sealed_secret;
        let secret = deps
            .mfa
            .as_ref()
            .and_then(|keys| keys.open(user.id, &sealed))
            .expect("it opens");
        let step = totp::step_at(deps.now()).saturating_add_signed(offset);
        totp::code_at(&secret, step)
    }

    /// A code no step within the drift window has for this user: certainly wrong.
    async fn wrong_code(deps: &TestDeps, tokens: &Value) -> String {
        let window = [
            code(deps, tokens, -1).await,
            code(deps, tokens, 0).await,
            code(deps, tokens, 1).await,
        ];
        ["000000", "111111", "222222", "333333"]
            .into_iter()
            .find(|c| !window.iter().any(|w| w == c))
            .unwrap_or_default()
            .to_owned()
    }

    /// Alice with TOTP enabled: her token response and her recovery codes.
    async fn alice_with_totp(deps: &TestDeps) -> (Value, Vec<String>) {
        let tokens = alice(deps).await;
        let setup = json!({"current_password": PASSWORD});
        let (status, body) = call(
            mfa_totp_setup::handle,
            deps,
            authed("POST", "/auth/mfa/totp/setup", &tokens, Some(&setup)),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let secret = body["secret"].as_str().expect("a secret");
        assert_eq!(secret.len(), 32);
        assert!(body["otpauth_uri"].as_str().is_some_and(|uri| {
            uri.starts_with("otpauth://totp/Auth:alice?secret=") && uri.contains(secret)
        }));
        let confirm = json!({"code": code(deps, &tokens, 0).await});
        let (status, body) = call(
            mfa_totp_confirm::handle,
            deps,
            authed("POST", "/auth/mfa/totp/confirm", &tokens, Some(&confirm)),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let codes: Vec<String> =
            serde_json::from_value(body["recovery_codes"].clone()).expect("recovery codes");
        (tokens, codes)
    }

    /// Signs in with the password: the `mfa_token` of the answer.
    async fn first_step(deps: &TestDeps) -> String {
        let body = json!({"identifier": "alice", "password": PASSWORD});
        let (status, body) = call(login::handle, deps, post("/auth/login", &body)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["mfa_required"], true);
        assert_eq!(body["methods"], json!(["totp", "recovery_code"]));
        assert!(body.get("access_token").is_none() && body.get("refresh_token").is_none());
        body["mfa_token"].as_str().expect("an mfa_token").to_owned()
    }

    async fn verify(deps: &TestDeps, mfa_token: &str, code: &str) -> (u16, Value) {
        let body = json!({"mfa_token": mfa_token, "code": code});
        call(mfa_verify::handle, deps, post("/auth/mfa/verify", &body)).await
    }

    fn clocked() -> (Arc<ManualClock>, TestDeps) {
        let clock = Arc::new(ManualClock::new());
        (clock.clone(), deps().with_clock(clock))
    }

    #[tokio::test]
    async fn setup_confirm_and_a_two_step_sign_in() {
        let (clock, deps) = clocked();
        let (tokens, recovery) = alice_with_totp(&deps).await;
        assert_eq!(recovery.len(), 10);
        let (_, me) = call(me::handle, &deps, authed("GET", "/auth/me", &tokens, None)).await;
        assert_eq!(me["mfa_enabled"], true);

        // The step the confirmation used is spent: the next step's code signs in.
        let mfa_token = first_step(&deps).await;
        assert_eq!(
            verify(&deps, &mfa_token, &code(&deps, &tokens, 0).await)
                .await
                .0,
            400,
            "the confirming code is spent (MF-01)"
        );
        let (status, body) = verify(&deps, &mfa_token, &code(&deps, &tokens, 1).await).await;
        assert_eq!(status, 200, "{body}");
        let access = token_claims(body["access_token"].as_str().unwrap_or_default());
        assert_eq!(access["amr"], json!(["pwd", "otp"]));
        assert_eq!(body["user"]["mfa_enabled"], true);

        // A refreshed access token keeps the second factor.
        let refreshed = json!({"refresh_token": body["refresh_token"]});
        let (status, refreshed) =
            call(refresh::handle, &deps, post("/auth/refresh", &refreshed)).await;
        assert_eq!(status, 200);
        let access = token_claims(refreshed["access_token"].as_str().unwrap_or_default());
        assert_eq!(access["amr"], json!(["pwd", "otp"]));

        // Single use: the same mfa_token again is refused, even with a fresh code.
        clock.advance(Duration::seconds(60));
        let (status, body) = verify(&deps, &mfa_token, &code(&deps, &tokens, 0).await).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("invalid_token"))
        );
    }

    #[tokio::test]
    async fn a_code_is_never_accepted_twice_even_with_a_new_mfa_token() {
        // MF-01: the step is stored; a replay inside its 30 s fails with a fresh challenge.
        let (_, deps) = clocked();
        let (tokens, _) = alice_with_totp(&deps).await;
        let fresh = code(&deps, &tokens, 1).await;
        assert_eq!(verify(&deps, &first_step(&deps).await, &fresh).await.0, 200);
        let (status, body) = verify(&deps, &first_step(&deps).await, &fresh).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("invalid_code")));
        // An earlier step than the last accepted one is refused too.
        let earlier = code(&deps, &tokens, 0).await;
        assert_eq!(
            verify(&deps, &first_step(&deps).await, &earlier).await.0,
            400
        );
    }

    #[tokio::test]
    async fn two_racing_verifications_with_one_code_one_wins() {
        let (_, deps) = clocked();
        let (tokens, _) = alice_with_totp(&deps).await;
        let fresh = code(&deps, &tokens, 1).await;
        let (a, b) = (first_step(&deps).await, first_step(&deps).await);
        let (first, second) = tokio::join!(verify(&deps, &a, &fresh), verify(&deps, &b, &fresh));
        let mut statuses = [first.0, second.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 400]);
    }

    #[tokio::test]
    async fn a_recovery_code_works_once_in_any_case_and_with_or_without_hyphens() {
        // MF-02.
        let (_, deps) = clocked();
        let (tokens, recovery) = alice_with_totp(&deps).await;
        let shouted = recovery[3].to_uppercase().replace('-', "");
        let (status, body) = verify(&deps, &first_step(&deps).await, &shouted).await;
        assert_eq!(status, 200, "{body}");
        let access = token_claims(body["access_token"].as_str().unwrap_or_default());
        assert_eq!(access["amr"], json!(["pwd", "otp"]));
        let (status, _) = verify(&deps, &first_step(&deps).await, &recovery[3]).await;
        assert_eq!(status, 400, "spent");
        let stored = deps.store.get_user(user_id(&tokens)).await.ok().flatten();
        let totp = stored.and_then(|u| u.totp).expect("totp");
        assert_eq!(totp.recovery_codes.len(), 9);
        assert!(
            totp.recovery_codes
                .iter()
                .all(|h| h.len() == 64 && !recovery.iter().any(|c| h.contains(c.as_str()))),
            "only hashes are stored"
        );
        assert_eq!(
            verify(&deps, &first_step(&deps).await, &recovery[4])
                .await
                .0,
            200
        );
    }

    #[tokio::test]
    async fn an_mfa_token_dies_after_five_wrong_codes_and_after_five_minutes() {
        // MF-03: five tries, each counted before its check; wrong codes count toward the
        // account lock.
        let (clock, deps) = clocked();
        let (tokens, _) = alice_with_totp(&deps).await;
        let wrong = wrong_code(&deps, &tokens).await;
        let mfa_token = first_step(&deps).await;
        for _ in 0..5 {
            assert_eq!(verify(&deps, &mfa_token, &wrong).await.0, 400);
        }
        let (status, body) = verify(&deps, &mfa_token, &code(&deps, &tokens, 1).await).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("invalid_token")),
            "five tries"
        );
        let body = json!({"identifier": "alice", "password": PASSWORD});
        let (status, _) = call(login::handle, &deps, post("/auth/login", &body)).await;
        assert_eq!(status, 429, "five wrong codes lock the account");
        clock.advance(Duration::seconds(2));
        let (status, body) = verify(
            &deps,
            &first_step(&deps).await,
            &code(&deps, &tokens, 1).await,
        )
        .await;
        assert_eq!(status, 200, "after the lock, the owner gets in: {body}");

        let fresh = first_step(&deps).await;
        clock.advance(Duration::seconds(301));
        let (status, _) = verify(&deps, &fresh, &code(&deps, &tokens, 0).await).await;
        assert_eq!(status, 401, "expired");
        assert_eq!(verify(&deps, "not-a-token", "123456").await.0, 401);
    }

    #[tokio::test]
    async fn a_password_alone_neither_unlocks_nor_counts() {
        // Someone with the password but not the phone cannot reset the count between rounds
        // of guesses; the owner's own right password costs nothing.
        let (_, deps) = clocked();
        let (tokens, _) = alice_with_totp(&deps).await;
        let wrong = wrong_code(&deps, &tokens).await;
        for _ in 0..3 {
            assert_eq!(verify(&deps, &first_step(&deps).await, &wrong).await.0, 400);
        }
        let id = user_id(&tokens);
        let failures = async || {
            let stored = deps.store.get_user(id).await.ok().flatten();
            stored.map(|u| u.lockout.failures)
        };
        assert_eq!(failures().await, Some(3), "only the wrong codes counted");
        first_step(&deps).await;
        assert_eq!(failures().await, Some(3), "a right password clears nothing");
        for _ in 0..2 {
            assert_eq!(verify(&deps, &first_step(&deps).await, &wrong).await.0, 400);
        }
        let body = json!({"identifier": "alice", "password": PASSWORD});
        let (status, _) = call(login::handle, &deps, post("/auth/login", &body)).await;
        assert_eq!(status, 429, "locked");
    }

    #[tokio::test]
    async fn a_third_partys_wrong_passwords_never_keep_the_owner_past_the_lock() {
        // AB-02: a long lock from wrong passwords is waited out like any other; the owner's
        // right password does not re-arm it against the second step.
        let (clock, deps) = clocked();
        let (tokens, _) = alice_with_totp(&deps).await;
        let body = json!({"identifier": "alice", "password": "wrong password"});
        for _ in 0..14 {
            let req = from_ip(post("/auth/login", &body), "198.51.100.66");
            call(login::handle, &deps, req).await;
            clock.advance(Duration::seconds(901));
        }
        let stored = deps.store.get_user(user_id(&tokens)).await.ok().flatten();
        assert!(stored.is_some_and(|u| u.lockout.failures >= 14));
        let owner = json!({"identifier": "alice", "password": PASSWORD});
        let req = from_ip(post("/auth/login", &owner), "203.0.113.77");
        let (status, answer) = call(login::handle, &deps, req).await;
        assert_eq!(status, 200, "{answer}");
        let fresh = code(&deps, &tokens, 1).await;
        let body = json!({"mfa_token": answer["mfa_token"], "code": fresh});
        let req = from_ip(post("/auth/mfa/verify", &body), "203.0.113.77");
        let (status, answer) = call(mfa_verify::handle, &deps, req).await;
        assert_eq!(status, 200, "{answer}");
    }

    #[tokio::test]
    async fn wrong_codes_spend_the_clients_budget() {
        // AB-03: a bounded number of wrong codes per client address and window, counted before
        // the check; another address is not affected.
        let clock = Arc::new(ManualClock::new());
        let config = crate::testing::config_with(&[("PROBE_CLIENT_LIMIT", "3")]);
        let deps =
            Deps::new(config, MemoryStore::new(), crate::testing::access_keys()).with_clock(clock);
        let (tokens, _) = alice_with_totp(&deps).await;
        let wrong = wrong_code(&deps, &tokens).await;
        let mfa_token = first_step(&deps).await;
        let from = |ip: &'static str| {
            let body = json!({"mfa_token": mfa_token, "code": wrong});
            from_ip(post("/auth/mfa/verify", &body), ip)
        };
        for _ in 0..3 {
            assert_eq!(
                call(mfa_verify::handle, &deps, from("198.51.100.20"))
                    .await
                    .0,
                400
            );
        }
        let response = mfa_verify::handle(&deps, from("198.51.100.20"))
            .await
            .expect("infallible");
        assert_eq!(response.status(), 429);
        assert!(retry_after(&response) > 0);
        assert_eq!(
            call(mfa_verify::handle, &deps, from("203.0.113.5")).await.0,
            400
        );
    }

    #[tokio::test]
    async fn setup_needs_the_password_and_refuses_a_second_secret() {
        let (_, deps) = clocked();
        let tokens = alice(&deps).await;
        let wrong = json!({"current_password": "wrong password"});
        let (status, body) = call(
            mfa_totp_setup::handle,
            &deps,
            authed("POST", "/auth/mfa/totp/setup", &tokens, Some(&wrong)),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("invalid_credentials"))
        );
        let (status, _) = call(
            mfa_totp_confirm::handle,
            &deps,
            authed(
                "POST",
                "/auth/mfa/totp/confirm",
                &tokens,
                Some(&json!({"code": "123456"})),
            ),
        )
        .await;
        assert_eq!(status, 400, "nothing pending");
        let (tokens, _) = {
            let deps2 = &deps;
            let setup = json!({"current_password": PASSWORD});
            let (status, _) = call(
                mfa_totp_setup::handle,
                deps2,
                authed("POST", "/auth/mfa/totp/setup", &tokens, Some(&setup)),
            )
            .await;
            assert_eq!(status, 200);
            let wrong_code = json!({"code": "000000"});
            let (status, body) = call(
                mfa_totp_confirm::handle,
                deps2,
                authed("POST", "/auth/mfa/totp/confirm", &tokens, Some(&wrong_code)),
            )
            .await;
            if code(deps2, &tokens, 0).await != "000000" {
                assert_eq!((status, body["code"].as_str()), (400, Some("invalid_code")));
            }
            let login = json!({"identifier": "alice", "password": PASSWORD});
            let (status, body) = call(login::handle, deps2, post("/auth/login", &login)).await;
            assert_eq!(status, 200);
            assert!(body["access_token"].is_string(), "pending is not enabled");
            let right = json!({"code": code(deps2, &tokens, 0).await});
            let (status, _) = call(
                mfa_totp_confirm::handle,
                deps2,
                authed("POST", "/auth/mfa/totp/confirm", &tokens, Some(&right)),
            )
            .await;
            assert_eq!(status, 200);
            (tokens, ())
        };
        let setup = json!({"current_password": PASSWORD});
        let (status, body) = call(
            mfa_totp_setup::handle,
            &deps,
            authed("POST", "/auth/mfa/totp/setup", &tokens, Some(&setup)),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (409, Some("mfa_already_enabled"))
        );
        let bad = json!({"code": 123456});
        let (status, _) = call(
            mfa_totp_confirm::handle,
            &deps,
            authed("POST", "/auth/mfa/totp/confirm", &tokens, Some(&bad)),
        )
        .await;
        assert_eq!(status, 422);
    }

    #[tokio::test]
    async fn disabling_needs_the_password_and_a_code_and_a_reset_keeps_totp() {
        let (_, deps) = clocked();
        let mailer = Arc::new(crate::testing::MemoryMailer::default());
        let deps = deps.with_mailer(mailer.clone());
        let (tokens, recovery) = alice_with_totp(&deps).await;
        let id = user_id(&tokens);

        // A reset (through the mailbox) keeps TOTP: the recovery codes are the way back. A
        // sign-in waiting for its second step from before the reset is over.
        let before_reset = first_step(&deps).await;
        let user = deps.store.get_user(id).await.ok().flatten().expect("alice");
        let (code_text, stored) =
            crate::handlers::codes::CodeKind::Reset.issue(&deps, id, &user.email);
        deps.store
            .store_reset_code(id, &stored)
            .await
            .expect("stored");
        let reset = json!({"email": "alice@example.com", "code": secrecy::ExposeSecret::expose_secret(&code_text), "new_password": "another long passphrase"});
        let (status, body) = call(
            reset_password::handle,
            &deps,
            post("/auth/password/reset", &reset),
        )
        .await;
        assert!(status == 200 || status == 204, "{status} {body}");
        let (status, _) = verify(&deps, &before_reset, &recovery[2]).await;
        assert_eq!(status, 401, "the revocation point ended the challenge");
        let login = json!({"identifier": "alice", "password": "another long passphrase"});
        let (status, body) = call(login::handle, &deps, post("/auth/login", &login)).await;
        assert_eq!((status, body["mfa_required"].as_bool()), (200, Some(true)));
        let (status, tokens) = verify(
            &deps,
            body["mfa_token"].as_str().unwrap_or_default(),
            &recovery[0],
        )
        .await;
        assert_eq!(status, 200);

        let delete = |body: Value| authed("DELETE", "/auth/mfa/totp", &tokens, Some(&body));
        let (status, _) = call(
            mfa_totp_disable::handle,
            &deps,
            delete(json!({"current_password": "wrong password", "code": recovery[1]})),
        )
        .await;
        assert_eq!(status, 401);
        let (status, body) = call(
            mfa_totp_disable::handle,
            &deps,
            delete(json!({"current_password": "another long passphrase", "code": recovery[0]})),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_code")),
            "spent"
        );
        let (status, _) = call(
            mfa_totp_disable::handle,
            &deps,
            delete(json!({"current_password": "another long passphrase", "code": code(&deps, &tokens, 1).await})),
        )
        .await;
        assert_eq!(status, 204);
        let (status, body) = call(login::handle, &deps, post("/auth/login", &login)).await;
        assert_eq!(status, 200);
        let access = token_claims(body["access_token"].as_str().unwrap_or_default());
        assert_eq!(access["amr"], json!(["pwd"]));
        assert_eq!(body["user"]["mfa_enabled"], false);
        let stored = deps.store.get_user(id).await.ok().flatten().expect("alice");
        assert!(stored.totp.is_none());
        // The owner hears of both changes.
        let notices: Vec<(String, String)> = mailer
            .sent()
            .into_iter()
            .filter(|mail| mail.subject.starts_with("Two-step"))
            .map(|mail| (mail.to, mail.subject))
            .collect();
        assert_eq!(
            notices,
            [
                (
                    "alice@example.com".to_owned(),
                    "Two-step sign-in is on".to_owned()
                ),
                (
                    "alice@example.com".to_owned(),
                    "Two-step sign-in is off".to_owned()
                ),
            ]
        );
    }

    #[tokio::test]
    async fn the_sample_events_reach_their_handlers() {
        let (_, deps) = clocked();
        alice_with_totp(&deps).await;
        let (status, body) = call(mfa_verify::handle, &deps, event("mfa-verify")).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("invalid_token")),
            "its token is no live challenge"
        );
        for (name, handler) in [
            ("mfa-totp-setup", 0),
            ("mfa-totp-confirm", 1),
            ("mfa-totp-disable", 2),
        ] {
            let req = event(name);
            let response = match handler {
                0 => mfa_totp_setup::handle(&deps, req).await,
                1 => mfa_totp_confirm::handle(&deps, req).await,
                _ => mfa_totp_disable::handle(&deps, req).await,
            }
            .expect("infallible");
            assert_placeholder_token_refused(&response);
        }
    }
}
