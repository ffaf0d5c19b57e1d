//! `POST /auth/login`: sign in with an email or a username (200 token response).
//!
//! Unknown identifier, wrong password: one answer, one Argon2 verification (LG-01, LG-02).

use lambda_http::Request;
use lambda_http::http::StatusCode;

use crate::domain::{Identifier, Lockout, PasswordAttempt, UserId, UserRecord};
use crate::error::ApiError;
use crate::handlers::mfa::second_factor::second_step_required;
use crate::handlers::sign_in::guard::Guard;
use crate::handlers::{
    Deps, Reply, SignIn, begin_session, check_cookie_mode_origin, client_ip, session_tokens,
};
use crate::http::{self, Fields, RequestBody, TokenDelivery};
use crate::store::{Limits, LockTarget, Mfa, Sessions, Users, keys};
use crate::throttle::{self, Quota, Window};

endpoint!(login, [POST], Users + Sessions + Limits + Mfa);

/// What a sign-in takes: who (`identifier`, `email` or `username`: exactly one) and the
/// password.
struct Credentials {
    identifier: String,
    password: PasswordAttempt,
}

impl RequestBody for Credentials {
    fn read(body: &mut Fields) -> Option<Self> {
        let given: Vec<&'static str> = ["identifier", "email", "username"]
            .into_iter()
            .filter(|key| body.sent(key))
            .collect();
        let identifier = match given.as_slice() {
            [key] => body.required_text(key),
            [] => body.required_text("identifier"),
            _ => {
                body.refuse("identifier", "give one of identifier, email or username");
                None
            }
        };
        let password = body.required("password", PasswordAttempt::parse);
        Some(Self {
            identifier: identifier?,
            password: password?,
        })
    }
}

async fn login<S: Users + Sessions + Limits + Mfa>(deps: &Deps<S>, req: &Request) -> Reply {
    let delivery = TokenDelivery::of(req)?;
    check_cookie_mode_origin(deps, req, delivery)?;
    let Credentials {
        identifier,
        password,
    } = http::read(req)?;
    let source_ip = client_ip(req);
    let (user, guard) = reserve_check(deps, &identifier, &source_ip).await?;

    let verified = deps
        .passwords
        .verify(
            password.expose(),
            user.as_ref().map(|u| u.password_hash.as_str()),
        )
        .await;
    let user = match user {
        Some(user) if verified => user,
        user => {
            let user_id = user.map(|u| u.id.to_string()).unwrap_or_default();
            match guard.failed() {
                // The failure that locks is reported as the lock.
                (lockout, Some(lock_secs)) => {
                    tracing::warn!(event = "account_locked", user_id, failures = lockout.failures, lock_secs, source_ip = %source_ip);
                }
                (lockout, None) => {
                    tracing::warn!(event = "login_failed", user_id, failures = lockout.failures, source_ip = %source_ip);
                }
            }
            return Err(ApiError::InvalidCredentials);
        }
    };
    if user.mfa_enabled() {
        // Half a sign-in (MF-03): only wrong passwords and wrong codes count, so earlier
        // failures stay and the address is not trusted until the second step.
        guard.second_step_due(deps).await?;
    } else {
        guard.passed(deps, &user).await?;
    }
    upgrade_hash(deps, &user, password.expose()).await;
    // Only after the right password: the 403 tells nothing to anyone without it.
    if deps.config.sessions.require_verified_email && !user.email_verified {
        tracing::info!(event = "login_unverified", user_id = %user.id, source_ip = %source_ip);
        return Err(ApiError::EmailNotVerified);
    }
    if user.mfa_enabled() {
        return second_step_required(deps, &user).await;
    }
    // Tokens only for a recorded session: one a user could not see or end is never handed out.
    let session = begin_session(deps, req, &user);
    deps.store.create_session(&session).await?;
    tracing::info!(event = "login_succeeded", user_id = %user.id, sid = %session.sid, source_ip = %source_ip);
    session_tokens(
        deps,
        &user,
        &session,
        SignIn::Password,
        delivery,
        StatusCode::OK,
    )
}

/// Who is signing in, and the sign-in guard's reservation of this check: one unit of the
/// client address's budget (LG-05) and one failure of the lock the check answers to (LG-04).
async fn reserve_check<S: Users + Limits>(
    deps: &Deps<S>,
    identifier: &str,
    source_ip: &str,
) -> Result<(Option<UserRecord>, Guard), ApiError> {
    let now = deps.now();
    let client = deps.client_part(source_ip);
    let window = Window::at(now, deps.config.limits.client_window.as_secs());
    let client_quota = Quota::Counter {
        key: keys::rate("login", &client, window.index),
        limit: deps.config.limits.login_client_limit,
        resets_at: window.end,
    };
    // An identifier that cannot name an account takes the unknown-account path: same work,
    // same answer, and a lock of its own, so a lock says nothing about which accounts exist.
    let parsed = Identifier::parse(identifier).ok();
    let normalized = parsed
        .as_ref()
        .map_or_else(|| identifier.to_lowercase(), Identifier::key);
    let identifier_lock = keys::lock(&deps.key_part(&normalized));

    // Per client address (LG-05): each password check takes one unit of the address's budget
    // before it is made, atomically (a right password gives it back), so racing requests
    // cannot overdraw it.
    let (exhausted, (owner, counters)) = tokio::try_join!(
        deps.store.consume(std::slice::from_ref(&client_quota), now),
        deps.store
            .find_user_id_with_counters(parsed.as_ref(), std::slice::from_ref(&identifier_lock)),
    )?;
    if let Some(retry_after_secs) = exhausted {
        tracing::warn!(event = "login_throttled", source_ip = %source_ip);
        return Err(ApiError::TooManyAttempts { retry_after_secs });
    }
    // The account and this address's trust in it, read alike whether or not the identifier
    // names an account (an unknown one reads a user no one has): the same reads, one round
    // trip each way, so the time of the answer does not tell which accounts exist.
    let id = owner.unwrap_or_else(UserId::new);
    let trust_key = keys::trusted_client(id, &client);
    let (user, (_, trust)) = tokio::try_join!(
        deps.store.get_user(id),
        deps.store
            .find_user_id_with_counters(None, std::slice::from_ref(&trust_key)),
    )?;
    let (user, trusted) = match owner {
        Some(_) => (user, trust.into_iter().next()),
        None => (None, None),
    };

    // Per account (LG-04), through the sign-in guard: the check is reserved before it is made,
    // so of any number of racing wrong passwords at most the threshold are checked; while
    // locked, the password is not even checked, so the answer cannot tell whether it was right.
    // An address the owner has used answers to a lock of its own: no one else's failures keep
    // the owner out.
    let trust_key = user
        .as_ref()
        .map(|user| keys::trusted_client(user.id, &client));
    let (target, seen) = match (&user, trusted, &trust_key) {
        (Some(_), Some(trust), Some(key)) => {
            (LockTarget::Trusted(key.clone()), Lockout::from(&trust))
        }
        (Some(user), _, _) => (LockTarget::User(user.id), user.lockout),
        (None, _, _) => {
            let seen = counters.first().map(Lockout::from).unwrap_or_default();
            let target = LockTarget::Counter {
                key: identifier_lock,
                expires_at: now + throttle::FAILURE_MEMORY_SECS,
            };
            (target, seen)
        }
    };
    let guard = Guard::reserve(deps, target, seen, Some(client_quota), trust_key)
        .await?
        .inspect_err(|_| tracing::warn!(event = "login_locked", source_ip = %source_ip))?;
    Ok((user, guard))
}

/// PW-05: a hash made with older parameters is replaced, while the password is at hand, by one
/// at the current parameters. Best effort: a failure costs this sign-in nothing.
async fn upgrade_hash<S: Users + Limits>(deps: &Deps<S>, user: &UserRecord, password: &str) {
    if !deps.passwords.needs_rehash(&user.password_hash) {
        return;
    }
    let upgraded = match deps.passwords.hash(password).await {
        Ok(new_hash) => deps
            .store
            .upgrade_password_hash(user.id, &user.password_hash, &new_hash)
            .await
            .map_err(ApiError::from),
        Err(err) => Err(err),
    };
    match upgraded {
        Ok(()) => tracing::info!(event = "password_rehashed", user_id = %user.id),
        Err(err) => {
            tracing::warn!(event = "password_rehash_failed", user_id = %user.id, code = err.code());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Response;
    use crate::store::Store;

    use crate::testing::MemoryStore;
    use crate::testing::access_keys;
    use crate::testing::{
        PASSWORD, alice, body_json, config_with, deps, event, from_ip, post, register, retry_after,
        sign_in, weak_hash, with_alice,
    };
    use serde_json::json;

    use time::Duration;

    #[tokio::test]
    async fn a_hash_with_older_parameters_is_upgraded_at_sign_in() {
        // PW-05: the stored hash shows the current parameters after one sign-in, and the
        // password still works.
        let (deps, tokens) = with_alice().await;
        let id = crate::domain::UserId::parse(tokens["user"]["id"].as_str().unwrap_or_default())
            .expect("an id");
        let current = deps.store.get_user(id).await.ok().flatten().expect("alice");
        let weak = weak_hash(PASSWORD);
        assert!(deps.passwords.needs_rehash(&weak));
        deps.store
            .upgrade_password_hash(id, &current.password_hash, &weak)
            .await
            .expect("seeded");

        sign_in(&deps, "alice").await;
        let stored = deps.store.get_user(id).await.ok().flatten().expect("alice");
        assert_ne!(stored.password_hash, weak);
        assert!(
            stored
                .password_hash
                .starts_with("$argon2id$v=19$m=19456,t=2,p=1$")
        );
        assert!(!deps.passwords.needs_rehash(&stored.password_hash));
        assert_eq!(
            stored.token_version, current.token_version,
            "nothing revoked"
        );
        sign_in(&deps, "alice").await;

        // A hash that changed meanwhile is not overwritten.
        let raced = deps
            .store
            .upgrade_password_hash(id, &weak, "$argon2id$v=19$m=19456,t=2,p=1$x$y")
            .await;
        assert!(matches!(raced, Err(crate::store::StoreError::Conflict)));
    }

    #[tokio::test]
    async fn signs_in_with_the_sample_event() {
        let (deps, _) = with_alice().await;
        let response = handle(&deps, event("login")).await.expect("ok");
        assert_eq!(response.status(), 200);
        let body = body_json(&response);
        assert_eq!(body["user"]["username"], "alice");
        assert!(body["refresh_token"].is_string());
    }

    #[tokio::test]
    async fn email_username_and_their_aliases_all_work_in_any_case() {
        let deps = deps();
        register(
            &deps,
            "Alice",
            "alice@example.com",
            "correct horse battery staple",
        )
        .await;
        for (key, value) in [
            ("identifier", "ALICE@example.com"),
            ("identifier", "alice"),
            ("email", "Alice@Example.com"),
            ("username", "ALICE"),
        ] {
            let req = post(
                "/auth/login",
                &json!({key: value, "password": "correct horse battery staple"}),
            );
            assert_eq!(
                handle(&deps, req).await.expect("ok").status(),
                200,
                "{key}={value}"
            );
        }
    }

    #[tokio::test]
    async fn unknown_user_and_wrong_password_look_the_same() {
        // LG-01: same status, body and headers; LG-02: one verification each.
        let (deps, _) = with_alice().await;
        let before = deps.passwords.verification_count();
        let wrong = attempt(&deps, "alice", "wrong password").await;
        let unknown = attempt(&deps, "nobody", "wrong password").await;
        let malformed = attempt(&deps, "x", "wrong password").await;
        assert_eq!(deps.passwords.verification_count() - before, 3);
        for response in [&wrong, &unknown, &malformed] {
            assert_eq!(response.status(), 401);
            assert_eq!(response.headers(), wrong.headers());
            assert_eq!(response.body().as_ref(), wrong.body().as_ref());
        }
        assert_eq!(body_json(&wrong)["code"], "invalid_credentials");
    }

    #[tokio::test]
    async fn bad_bodies_are_4xx() {
        let deps = deps();
        let two = post(
            "/auth/login",
            &json!({"email": "a@b.co", "username": "abc", "password": "x"}),
        );
        assert_eq!(handle(&deps, two).await.expect("ok").status(), 422);
        let typed = post("/auth/login", &json!({"identifier": 5, "password": ["x"]}));
        let response = handle(&deps, typed).await.expect("ok");
        assert_eq!(response.status(), 422);
        let body = body_json(&response);
        assert_eq!(body["errors"]["identifier"], "must be a string");
        assert_eq!(body["errors"]["password"], "must be a string");
        let long = post(
            "/auth/login",
            &json!({"identifier": "alice", "password": "x".repeat(129)}),
        );
        assert_eq!(handle(&deps, long).await.expect("ok").status(), 422);
        assert_eq!(
            deps.passwords.verification_count(),
            0,
            "no hashing for malformed requests"
        );
    }

    async fn attempt(deps: &Deps<impl Store>, identifier: &str, password: &str) -> Response {
        let body = json!({"identifier": identifier, "password": password});
        handle(deps, post("/auth/login", &body))
            .await
            .expect("infallible")
    }

    #[tokio::test]
    async fn the_account_locks_after_the_threshold_and_the_lock_doubles() {
        // LG-04: 5 failures, then 1 s, doubling, capped at 900 s.
        let (clock, deps) = crate::testing::clocked();
        alice(&deps).await;
        for _ in 0..5 {
            assert_eq!(
                attempt(&deps, "alice", "wrong password").await.status(),
                401
            );
        }
        // Locked: right or wrong, the same 429, and the password is not checked.
        let before = deps.passwords.verification_count();
        let right = attempt(&deps, "alice", PASSWORD).await;
        let wrong = attempt(&deps, "ALICE@example.com", "wrong password").await;
        assert_eq!(
            deps.passwords.verification_count(),
            before,
            "no verification while locked"
        );
        for response in [&right, &wrong] {
            assert_eq!(response.status(), 429);
            assert_eq!(body_json(response)["code"], "too_many_attempts");
            assert_eq!(retry_after(response), 1);
        }
        assert_eq!(right.body().as_ref(), wrong.body().as_ref());
        clock.advance(Duration::seconds(1));
        assert_eq!(
            attempt(&deps, "alice", "wrong password").await.status(),
            401
        );
        assert_eq!(
            retry_after(&attempt(&deps, "alice", PASSWORD).await),
            2,
            "the lock doubled"
        );
        clock.advance(Duration::seconds(2));
        // After the wait the right password works, and clears the count.
        assert_eq!(attempt(&deps, "alice", PASSWORD).await.status(), 200);
        assert_eq!(
            attempt(&deps, "alice", "wrong password").await.status(),
            401
        );
        assert_eq!(
            attempt(&deps, "alice", PASSWORD).await.status(),
            200,
            "one failure locks nothing"
        );
    }

    #[tokio::test]
    async fn an_address_the_owner_signed_in_from_has_a_lock_of_its_own() {
        let (deps, _) = with_alice().await;
        let (owner, attacker) = ("203.0.113.9", "198.51.100.7");
        let from = |ip: &'static str, password: &'static str| {
            let body = json!({"identifier": "alice", "password": password});
            handle(&deps, from_ip(post("/auth/login", &body), ip))
        };
        assert_eq!(from(owner, PASSWORD).await.expect("ok").status(), 200);
        for _ in 0..5 {
            let failed = from(attacker, "wrong password").await.expect("ok");
            assert_eq!(failed.status(), 401);
        }
        let locked = from(attacker, PASSWORD).await.expect("ok");
        assert_eq!(locked.status(), 429, "locked for every other address");
        assert_eq!(from(owner, PASSWORD).await.expect("ok").status(), 200);
    }

    #[tokio::test]
    async fn unknown_identifiers_lock_alike_so_a_lock_reveals_nothing() {
        let deps = deps();
        for _ in 0..5 {
            assert_eq!(
                attempt(&deps, "ghost", "wrong password").await.status(),
                401
            );
        }
        let locked = attempt(&deps, "ghost", "wrong password").await;
        assert_eq!(locked.status(), 429);
        assert_eq!(retry_after(&locked), 1);
    }

    /// Alice, on a stack that allows each client three failed sign-ins per window.
    async fn alice_with_three_failures_a_client() -> Deps<MemoryStore> {
        let config = config_with(&[("LOGIN_CLIENT_LIMIT", "3")]);
        let deps = Deps::new(config, MemoryStore::new(), access_keys());
        alice(&deps).await;
        deps
    }

    #[tokio::test]
    async fn one_client_address_is_limited_across_accounts() {
        // LG-05: keyed on the address API Gateway saw; X-Forwarded-For changes nothing.
        let deps = alice_with_three_failures_a_client().await;
        for i in 0..3 {
            let mut req = post(
                "/auth/login",
                &json!({"identifier": format!("user{i}"), "password": "wrong password"}),
            );
            req.headers_mut().insert(
                "x-forwarded-for",
                format!("10.0.0.{i}").parse().expect("header"),
            );
            assert_eq!(handle(&deps, req).await.expect("ok").status(), 401);
        }
        let limited = attempt(&deps, "alice", PASSWORD).await;
        assert_eq!(limited.status(), 429);
        assert!((1..=300).contains(&retry_after(&limited)));
    }

    #[tokio::test]
    async fn an_ipv6_client_is_limited_across_its_64() {
        // A client given a /64 has 2^64 addresses: each new one must not be a new budget.
        let deps = alice_with_three_failures_a_client().await;
        let from = |ip: &str, identifier: &str| {
            let body = json!({"identifier": identifier, "password": "wrong password"});
            crate::testing::from_ip(post("/auth/login", &body), ip)
        };
        for i in 1..=3 {
            let req = from(&format!("2001:db8:7:7::{i}"), &format!("user{i}"));
            assert_eq!(handle(&deps, req).await.expect("ok").status(), 401);
        }
        let same_network = from("2001:db8:7:7:ffff::9", "user9");
        assert_eq!(handle(&deps, same_network).await.expect("ok").status(), 429);
        let next_network = from("2001:db8:7:8::1", "user9");
        assert_eq!(handle(&deps, next_network).await.expect("ok").status(), 401);
    }
}
