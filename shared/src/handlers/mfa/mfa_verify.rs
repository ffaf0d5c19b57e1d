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

use crate::error::ApiError;
use crate::handlers::mfa::TwoStepStore;
use crate::handlers::mfa::second_factor::{
    CHALLENGE_TRIES, challenge_hash, check_code, code_accepted, count_code, parse_code,
};
use crate::handlers::{
    Deps, Reply, SignIn, begin_session, check_cookie_mode_origin, client_ip, session_tokens,
};
use crate::http::{self, TokenDelivery};
use crate::store::StoreError;

endpoint!(mfa_verify, [POST], TwoStepStore);

/// The longest `mfa_token` read (one is 43 characters).
const MAX_TOKEN_CHARS: usize = 128;

async fn mfa_verify<S: TwoStepStore>(deps: &Deps<S>, req: &Request) -> Reply {
    let delivery = TokenDelivery::of(req)?;
    check_cookie_mode_origin(deps, req, delivery)?;
    let (token, code) = http::read_with(req, |body| {
        let token = body.required_text("mfa_token");
        let code = body.required("code", parse_code);
        Some((token?, code?))
    })?;
    if token.is_empty() || token.len() > MAX_TOKEN_CHARS {
        return Err(ApiError::InvalidToken);
    }
    deps.mfa_keys()?;

    let source_ip = client_ip(req);
    let Some(challenge) = deps
        .store
        .try_challenge(&challenge_hash(&token), CHALLENGE_TRIES, deps.now())
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
    let Some(factor) = check_code(deps, &user, &code)? else {
        let _ = counted.failed();
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

#[cfg(test)]
mod tests {
    use crate::handlers::mfa::test_support::*;

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

    /// The account's count of wrong second-factor codes.
    async fn code_failures(deps: &TestDeps, tokens: &Value) -> u64 {
        use crate::store::Limits;
        let key = crate::store::keys::second_factor_lock(user_id(tokens));
        let (_, counters) = (deps.store)
            .find_user_id_with_counters(None, std::slice::from_ref(&key))
            .await
            .expect("read");
        counters.first().map_or(0, |counter| counter.count)
    }

    #[tokio::test]
    async fn an_mfa_token_dies_after_five_wrong_codes_and_after_five_minutes() {
        // MF-03: five tries, each counted before its check; MF-06: wrong codes lock the second
        // step (not the password).
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
        let right = code(&deps, &tokens, 1).await;
        let (status, _) = verify(&deps, &first_step(&deps).await, &right).await;
        assert_eq!(status, 429, "five wrong codes lock the second step");
        clock.advance(Duration::seconds(2));
        let (status, body) = verify(&deps, &first_step(&deps).await, &right).await;
        assert_eq!(status, 200, "after the lock, the owner gets in: {body}");
        assert_eq!(
            code_failures(&deps, &tokens).await,
            0,
            "a right code clears them"
        );

        let fresh = first_step(&deps).await;
        clock.advance(Duration::seconds(301));
        let (status, _) = verify(&deps, &fresh, &code(&deps, &tokens, 0).await).await;
        assert_eq!(status, 401, "expired");
        assert_eq!(verify(&deps, "not-a-token", "123456").await.0, 401);
    }

    /// Alice with TOTP on and `failures` wrong codes sent, each with a sign-in of its own: the
    /// deps, her tokens and the wrong code.
    async fn after_wrong_codes(failures: usize) -> (TestDeps, Value, String) {
        let (_, deps) = clocked();
        let (tokens, _) = alice_with_totp(&deps).await;
        let wrong = wrong_code(&deps, &tokens).await;
        for _ in 0..failures {
            assert_eq!(verify(&deps, &first_step(&deps).await, &wrong).await.0, 400);
        }
        (deps, tokens, wrong)
    }

    #[tokio::test]
    async fn a_password_alone_neither_unlocks_nor_counts() {
        // Someone with the password but not the phone cannot reset the count between rounds
        // of guesses; the owner's own right password costs nothing.
        let (deps, tokens, wrong) = after_wrong_codes(3).await;
        assert_eq!(
            code_failures(&deps, &tokens).await,
            3,
            "the wrong codes counted"
        );
        first_step(&deps).await;
        assert_eq!(
            code_failures(&deps, &tokens).await,
            3,
            "a right password clears nothing"
        );
        let password_failures = deps.store.get_user(user_id(&tokens)).await.ok().flatten();
        assert_eq!(password_failures.map(|u| u.lockout.failures), Some(0));
        for _ in 0..2 {
            assert_eq!(verify(&deps, &first_step(&deps).await, &wrong).await.0, 400);
        }
        let right = code(&deps, &tokens, 1).await;
        let (status, _) = verify(&deps, &first_step(&deps).await, &right).await;
        assert_eq!(status, 429, "locked");
    }

    #[tokio::test]
    async fn a_reset_through_the_mailbox_keeps_the_count_of_wrong_codes() {
        // MF-06 (issue 27): with the mailbox but not the authenticator, each reset used to
        // give a fresh count; the codes' failures now outlive it.
        let (deps, tokens, _) = after_wrong_codes(4).await;
        let id = user_id(&tokens);
        let reset = crate::domain::StoredCode {
            hash: "reset".into(),
            expires_at: deps.now() + 600,
        };
        deps.store
            .store_reset_code(id, &reset)
            .await
            .expect("stored");
        let now = deps.now_datetime().expect("now");
        (deps.store)
            .reset_password(id, "reset", "a new hash", now)
            .await
            .expect("reset");
        assert_eq!(
            code_failures(&deps, &tokens).await,
            4,
            "the reset kept them"
        );
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
}
