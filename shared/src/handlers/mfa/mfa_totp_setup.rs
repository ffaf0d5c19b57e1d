//! `POST /auth/mfa/totp/setup`: with the current password, a new TOTP secret for any
//! authenticator app, pending until a first code confirms it (`/auth/mfa/totp/confirm`).
//!
//! The secret is returned this once, and stored only sealed (MF-02). Setting up again before
//! confirming replaces the pending secret; with TOTP enabled, 409 `mfa_already_enabled`.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde_json::json;

use crate::domain::PasswordAttempt;
use crate::error::ApiError;
use crate::handlers::mfa::{TOTP_SETUP_SECS, TwoStepStore};
use crate::handlers::{Deps, Reply, authenticate_live, client_ip, reauthenticate};
use crate::http;
use crate::store::StoreError;
use crate::totp;

endpoint!(mfa_totp_setup, [POST], TwoStepStore);

async fn mfa_totp_setup<S: TwoStepStore>(deps: &Deps<S>, req: &Request) -> Reply {
    let caller = authenticate_live(deps, req).await?;
    let current = http::read_with(req, |body| {
        body.required("current_password", PasswordAttempt::parse)
    })?;
    let keys = deps.mfa_keys()?;
    let user = &caller.user;
    // Only the owner of the address can add a second factor: whoever controls the mailbox can
    // always get back in (MF-05).
    if !user.email_verified {
        return Err(ApiError::EmailNotVerified);
    }
    reauthenticate(deps, &caller, &current).await?;
    if user.mfa_enabled() {
        return Err(ApiError::MfaAlreadyEnabled);
    }

    let secret = totp::new_secret();
    match deps
        .store
        .begin_totp(
            user.id,
            &keys.seal(user.id, &secret),
            deps.now() + TOTP_SETUP_SECS,
        )
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

#[cfg(test)]
mod tests {
    use crate::handlers::mfa::test_support::*;

    #[tokio::test]
    async fn a_second_factor_goes_only_on_a_verified_address() {
        // MF-05: whoever registered someone else's address, or holds the password of an
        // account whose address was never proven, cannot put the mailbox's owner out.
        let (_, deps) = clocked();
        let tokens = alice(&deps).await;
        let password = json!({"current_password": PASSWORD});
        let (status, body) = setup(&deps, &tokens, &password).await;
        let refused = (403, Some("email_not_verified"));
        assert_eq!((status, body["code"].as_str()), refused);
        let (status, body) = confirm(&deps, &tokens, &json!({"code": "123456"})).await;
        assert_eq!((status, body["code"].as_str()), refused);
        verify_address(&deps, &tokens).await;
        assert_eq!(setup(&deps, &tokens, &password).await.0, 200);
    }

    /// Alice, her address verified, on a clock the test moves, with access tokens that outlive
    /// a setup's wait.
    async fn verified_alice_on_a_clock() -> (Arc<ManualClock>, TestDeps, Value) {
        let clock = Arc::new(ManualClock::new());
        let config = crate::testing::config_with(&[("ACCESS_TOKEN_TTL_SECONDS", "7200")]);
        let deps = Deps::new(config, MemoryStore::new(), crate::testing::access_keys())
            .with_clock(clock.clone());
        let tokens = alice(&deps).await;
        verify_address(&deps, &tokens).await;
        (clock, deps, tokens)
    }

    #[tokio::test]
    async fn a_setup_not_confirmed_in_fifteen_minutes_is_void() {
        let (clock, deps, tokens) = verified_alice_on_a_clock().await;
        let password = json!({"current_password": PASSWORD});
        assert_eq!(setup(&deps, &tokens, &password).await.0, 200);
        clock.advance(Duration::minutes(15));
        let late = json!({"code": code(&deps, &tokens, 0).await});
        let (status, body) = confirm(&deps, &tokens, &late).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("invalid_code")));
        assert_eq!(setup(&deps, &tokens, &password).await.0, 200);
        clock.advance(Duration::minutes(14));
        let in_time = json!({"code": code(&deps, &tokens, 0).await});
        assert_eq!(confirm(&deps, &tokens, &in_time).await.0, 200);
    }

    #[tokio::test]
    async fn wrong_confirmation_codes_count_for_the_account_from_any_address() {
        // MF-06: a budget per client address alone would let many addresses guess on.
        let (_, deps, tokens) = verified_alice_on_a_clock().await;
        let password = json!({"current_password": PASSWORD});
        assert_eq!(setup(&deps, &tokens, &password).await.0, 200);
        let wrong = json!({"code": wrong_code(&deps, &tokens).await});
        let confirm_from = |ip: String, body: Value| {
            let req = authed("POST", "/auth/mfa/totp/confirm", &tokens, Some(&body));
            call(mfa_totp_confirm::handle, &deps, from_ip(req, &ip))
        };
        let threshold = deps.config.limits.lockout_threshold;
        for i in 0..threshold {
            let (status, _) = confirm_from(format!("10.0.0.{i}"), wrong.clone()).await;
            assert_eq!(status, 400, "try {i}");
        }
        let right = json!({"code": code(&deps, &tokens, 0).await});
        let (status, body) = confirm_from("10.0.1.1".into(), right).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (429, Some("too_many_attempts"))
        );
    }

    #[tokio::test]
    async fn setup_needs_the_password_and_refuses_a_second_secret() {
        let (_, deps) = clocked();
        let tokens = alice(&deps).await;
        verify_address(&deps, &tokens).await;
        let wrong = json!({"current_password": "wrong password"});
        let (status, body) = setup(&deps, &tokens, &wrong).await;
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
            let password = json!({"current_password": PASSWORD});
            let (status, _) = setup(deps2, &tokens, &password).await;
            assert_eq!(status, 200);
            let wrong_code = json!({"code": "000000"});
            let (status, body) = confirm(deps2, &tokens, &wrong_code).await;
            if code(deps2, &tokens, 0).await != "000000" {
                assert_eq!((status, body["code"].as_str()), (400, Some("invalid_code")));
            }
            let login = json!({"identifier": "alice", "password": PASSWORD});
            let (status, body) = call(login::handle, deps2, post("/auth/login", &login)).await;
            assert_eq!(status, 200);
            assert!(body["access_token"].is_string(), "pending is not enabled");
            let right = json!({"code": code(deps2, &tokens, 0).await});
            let (status, _) = confirm(deps2, &tokens, &right).await;
            assert_eq!(status, 200);
            (tokens, ())
        };
        let password = json!({"current_password": PASSWORD});
        let (status, body) = setup(&deps, &tokens, &password).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (409, Some("mfa_already_enabled"))
        );
        let bad = json!({"code": 123456});
        let (status, _) = confirm(&deps, &tokens, &bad).await;
        assert_eq!(status, 422);
    }
}
