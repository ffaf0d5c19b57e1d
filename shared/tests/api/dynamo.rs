//! Integration tests of accounts against a real DynamoDB API (the local endpoint `make test`
//! starts): the only place where conditional writes and transactions are proven.
//!
//! Needs `AWS_ENDPOINT_URL`, `USERS_TABLE` and `TOKENS_TABLE`, which `make test` sets.

use std::sync::Arc;

use crate::common::*;
use serde_json::json;
use shared::handlers::{Deps, login, me, register};
use shared::store::DynamoStore;
use shared::testing::{body_json, expected_calls, from_ip, get, post};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_of_one_email_create_exactly_one_user() {
    // RG-01: 12 simultaneous registrations, one email, different usernames.
    let deps = deps().await;
    let email = format!("{}@example.com", unique("race"));
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let deps = Arc::clone(&deps);
            let body = register_body(&unique(&format!("racer{i}_")), &email);
            tokio::spawn(
                async move { register::handle(&deps, post("/auth/register", &body)).await },
            )
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        let response = task.await.expect("task").expect("infallible");
        if response.status() == 409 {
            assert_eq!(body_json(&response)["code"], "email_taken");
        }
        statuses.push(response.status().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        11,
        "{statuses:?}"
    );

    let items = scan_users().await;
    let users: Vec<_> = items.iter().filter(|i| attr(i, "email") == email).collect();
    assert_eq!(users.len(), 1, "exactly one user item");
    let winner = attr(users[0], "id");
    let email_markers: Vec<_> = items
        .iter()
        .filter(|i| attr(i, "pk") == format!("EMAIL#{email}"))
        .collect();
    assert_eq!(email_markers.len(), 1);
    assert_eq!(attr(email_markers[0], "user_id"), winner);
    // No loser left a username behind: every racer's username marker belongs to the winner.
    let racer_markers = items
        .iter()
        .filter(|i| attr(i, "pk").starts_with("USERNAME#racer") && attr(i, "user_id") == winner);
    assert_eq!(racer_markers.count(), 1);
    let orphans = items.iter().filter(|i| {
        attr(i, "pk").starts_with("USERNAME#racer")
            && !items
                .iter()
                .any(|u| attr(u, "pk") == format!("USER#{}", attr(i, "user_id")))
    });
    assert_eq!(orphans.count(), 0, "no uniqueness record without its user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_of_one_username_in_any_case_create_exactly_one_user() {
    let deps = deps().await;
    let name = unique("Name");
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let deps = Arc::clone(&deps);
            let username = if i % 2 == 0 {
                name.to_uppercase()
            } else {
                name.to_lowercase()
            };
            let body = register_body(&username, &format!("{}@example.com", unique("u")));
            tokio::spawn(
                async move { register::handle(&deps, post("/auth/register", &body)).await },
            )
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        let response = task.await.expect("task").expect("infallible");
        match response.status().as_u16() {
            201 => created += 1,
            409 => assert_eq!(body_json(&response)["code"], "username_taken"),
            other => panic!("unexpected {other}: {}", body_json(&response)),
        }
    }
    assert_eq!(created, 1);
    let items = scan_users().await;
    let key = format!("USERNAME#{}", name.to_lowercase());
    assert_eq!(items.iter().filter(|i| attr(i, "pk") == key).count(), 1);
    let users = items
        .iter()
        .filter(|i| attr(i, "username").eq_ignore_ascii_case(&name));
    assert_eq!(users.count(), 1);
}

#[tokio::test]
async fn email_and_username_are_case_insensitive_for_sign_up_and_sign_in() {
    let deps = deps().await;
    let name = unique("Alice");
    let email = format!("{name}@Example.COM");
    let response = register_as(&deps, &name, &email).await;
    let body = body_json(&response.expect("infallible"));
    assert_eq!(body["user"]["email"], email.to_lowercase());
    assert_eq!(
        body["user"]["username"], name,
        "the username keeps its case for display"
    );

    let other_email = format!("{}@example.com", unique("x"));
    let taken = register::handle(
        &deps,
        post(
            "/auth/register",
            &register_body(&name.to_lowercase(), &other_email),
        ),
    );
    assert_eq!(
        body_json(&taken.await.expect("infallible"))["code"],
        "username_taken"
    );
    let taken = register::handle(
        &deps,
        post(
            "/auth/register",
            &register_body(&unique("y"), &email.to_uppercase()),
        ),
    );
    assert_eq!(
        body_json(&taken.await.expect("infallible"))["code"],
        "email_taken"
    );

    for identifier in [
        name.to_uppercase(),
        email.to_lowercase(),
        email.to_uppercase(),
    ] {
        let req = post(
            "/auth/login",
            &json!({"identifier": identifier, "password": PASSWORD}),
        );
        let response = login::handle(&deps, req).await.expect("infallible");
        assert_eq!(response.status(), 200, "{identifier}");
        let token = body_json(&response)["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let bearer = format!("Bearer {token}");
        let me = me::handle(&deps, get("/auth/me", &[("authorization", &bearer)]))
            .await
            .expect("infallible");
        assert_eq!(body_json(&me)["username"], name);
    }
}

#[tokio::test]
async fn unknown_identifiers_spend_one_argon2_verification_and_get_the_same_answer() {
    // LG-01, LG-02, against the real store.
    let deps = deps().await;
    let name = unique("known");
    let email = format!("{name}@example.com");
    let created = register_as(&deps, &name, &email).await;
    assert_eq!(created.expect("infallible").status(), 201);

    let mut answers = Vec::new();
    for identifier in [
        unique("nobody"),
        format!("{}@example.com", unique("nobody")),
        name.clone(),
    ] {
        let before = deps.passwords.verification_count();
        let req = post(
            "/auth/login",
            &json!({"identifier": identifier, "password": "not the password"}),
        );
        let response = login::handle(&deps, req).await.expect("infallible");
        assert_eq!(
            deps.passwords.verification_count() - before,
            1,
            "{identifier}"
        );
        answers.push(response);
    }
    for response in &answers {
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers(), answers[0].headers());
        assert_eq!(response.body().as_ref(), answers[0].body().as_ref());
    }
}

#[tokio::test]
async fn unknown_and_known_identifiers_make_the_same_calls() {
    // LG-01: the same reads and writes (and round trips) whether or not an identifier names an
    // account, so the time of the answer does not tell.
    let (deps, counter) = counted_deps().await;
    let name = unique("same");
    let body = register_body(&name, &format!("{name}@example.com"));
    let created = register::handle(&deps, post("/auth/register", &body)).await;
    assert_eq!(created.expect("infallible").status(), 201);
    let mut calls = Vec::new();
    for identifier in [name, unique("nobody")] {
        counter.reset();
        let body = json!({"identifier": identifier, "password": "not the password"});
        let answer = login::handle(&deps, post("/auth/login", &body)).await;
        assert_eq!(answer.expect("infallible").status(), 401);
        calls.push(counter.calls());
    }
    assert_eq!(calls[0], calls[1], "a known account, then an unknown one");
}

#[tokio::test]
async fn bad_bodies_answer_4xx_on_every_endpoint_and_write_nothing() {
    let (deps, counter) = counted_deps().await;
    let big = format!("{{\"username\":\"{}\"}}", "x".repeat(20 * 1024));
    let cases: Vec<(&str, Option<&str>, String)> = vec![
        (
            "malformed",
            Some("application/json"),
            "{\"username\":".into(),
        ),
        ("not an object", Some("application/json"), "[\"a\"]".into()),
        (
            "wrong types",
            Some("application/json"),
            "{\"username\":1,\"email\":true,\"password\":{}}".into(),
        ),
        ("too large", Some("application/json"), big),
        (
            "form post",
            Some("application/x-www-form-urlencoded"),
            "username=a&password=b".into(),
        ),
        ("text", Some("text/plain"), "{}".into()),
        ("no content type", None, "{}".into()),
        ("empty", Some("application/json"), String::new()),
        (
            "invalid utf-8",
            Some("application/json"),
            String::from_utf8_lossy(b"{\"a\":\"\xff\"}").into(),
        ),
    ];
    for (name, content_type, body) in cases {
        for path in ["/auth/register", "/auth/login"] {
            let mut req = post(path, &json!({}));
            *req.body_mut() = lambda_http::Body::from(body.clone());
            req.headers_mut().remove("content-type");
            if let Some(ct) = content_type {
                req.headers_mut()
                    .insert("content-type", ct.parse().expect("header"));
            }
            let response = if path.ends_with("register") {
                register::handle(&deps, req).await
            } else {
                login::handle(&deps, req).await
            }
            .expect("infallible");
            assert!(
                response.status().is_client_error(),
                "{path} {name}: {}",
                response.status()
            );
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json"
            );
        }
    }
    // GET /auth/me ignores bodies, and answers 401 without a token whatever it is sent.
    let response = me::handle(&deps, get("/auth/me", &[("authorization", "Bearer {")])).await;
    assert_eq!(response.expect("infallible").status(), 401);
    assert_eq!(
        counter.calls(),
        Default::default(),
        "refused before any storage call"
    );
}

#[tokio::test]
async fn no_password_hash_or_token_reaches_an_error_body_or_a_log_line() {
    // ER-01, ER-02, RT-09: run the flows, then look for every secret they handled.
    let deps = deps().await;
    let name = unique("secretive");
    let email = format!("{name}@example.com");
    let password = format!("{}-Passphrase", unique("s3cret"));
    let body = json!({"username": name, "email": email, "password": password});
    let created = register::handle(&deps, post("/auth/register", &body))
        .await
        .expect("infallible");
    let tokens = body_json(&created);
    let mut bodies = Vec::new();
    for (identifier, attempt) in [
        (&name, password.as_str()),
        (&name, "wrong password 1"),
        (&email, "wrong 2"),
    ] {
        let req = post(
            "/auth/login",
            &json!({"identifier": identifier, "password": attempt}),
        );
        bodies.push(login::handle(&deps, req).await.expect("infallible"));
    }
    let again = register::handle(&deps, post("/auth/register", &body))
        .await
        .expect("infallible");
    assert_eq!(again.status(), 409);
    let access = tokens["access_token"].as_str().unwrap_or_default();
    let refresh = tokens["refresh_token"].as_str().unwrap_or_default();
    let wrong_use = format!("Bearer {refresh}");
    let refused = me::handle(&deps, get("/auth/me", &[("authorization", &wrong_use)]))
        .await
        .expect("infallible");
    assert_eq!(refused.status(), 401);
    bodies.extend([again, refused]);

    let hash = scan_users()
        .await
        .into_iter()
        .find(|i| attr(i, "email") == email)
        .map(|i| attr(&i, "password_hash").to_owned())
        .expect("stored user");
    assert!(hash.starts_with("$argon2id$"));
    let hash_output = hash.rsplit('$').next().unwrap_or_default().to_owned();
    let signature = |t: &str| t.rsplit('.').next().unwrap_or_default().to_owned();
    let secrets = [
        password.clone(),
        hash,
        hash_output,
        access.into(),
        refresh.into(),
        signature(access),
        signature(refresh),
    ];
    let logs = log_text();
    assert!(
        logs.contains("login_failed"),
        "the security events are captured"
    );
    for secret in &secrets {
        assert!(!secret.is_empty());
        assert!(!logs.contains(secret.as_str()), "a secret reached the logs");
        for response in bodies.iter().filter(|r| r.status() != 200) {
            let text = String::from_utf8_lossy(response.body().as_ref());
            assert!(
                !text.contains(secret.as_str()),
                "a secret reached an error body"
            );
        }
    }
    assert!(!logs.contains("wrong password 1"));
}

#[tokio::test]
async fn each_endpoint_stays_within_its_dynamodb_call_budget() {
    // Counted by an SDK interceptor: register is the address's conflict budget, one transaction,
    // (which also records the first session) and the budget's unit given back; a clean login
    // is five round trips (the address's budget with the identifier lookup, the user with the
    // address's trust, the reservation, then clearing, trusting and refunding at once, then
    // the session's record); GET /auth/me one read.
    let (deps, counter) = counted_deps().await;
    let name = unique("budget");
    let body = register_body(&name, &format!("{name}@example.com"));
    let created = register::handle(&deps, post("/auth/register", &body))
        .await
        .expect("infallible");
    assert_eq!(created.status(), 201);
    assert_eq!(
        counter.calls(),
        expected_calls(&[("TransactWriteItems", 1), ("UpdateItem", 2)])
    );

    counter.reset();
    let req = post(
        "/auth/login",
        &json!({"identifier": name, "password": PASSWORD}),
    );
    let signed_in = login::handle(&deps, req).await.expect("infallible");
    assert_eq!(signed_in.status(), 200);
    assert_eq!(
        counter.calls(),
        expected_calls(&[
            ("BatchGetItem", 2),
            ("GetItem", 1),
            ("PutItem", 1),
            ("UpdateItem", 5)
        ])
    );

    counter.reset();
    let bearer = format!(
        "Bearer {}",
        body_json(&signed_in)["access_token"]
            .as_str()
            .unwrap_or_default()
    );
    let found = me::handle(&deps, get("/auth/me", &[("authorization", &bearer)]))
        .await
        .expect("infallible");
    assert_eq!(found.status(), 200);
    assert_eq!(counter.calls(), expected_calls(&[("GetItem", 1)]));
}

#[tokio::test]
async fn a_weaker_stored_hash_is_upgraded_at_sign_in() {
    // PW-05: a user whose hash was made at m=7168,t=5 signs in; the stored hash now shows the
    // current parameters, and only while it is unchanged (a conditional write).
    use shared::store::{StoreError, Users};
    let deps = deps().await;
    let (name, tokens) = sign_up(&deps).await;
    let id = shared::domain::UserId::parse(tokens["user"]["id"].as_str().unwrap_or_default())
        .expect("an id");
    let current = deps
        .store
        .get_user(id)
        .await
        .ok()
        .flatten()
        .expect("the user");
    let weak = shared::testing::weak_hash(PASSWORD);
    deps.store
        .upgrade_password_hash(id, &current.password_hash, &weak)
        .await
        .expect("seeded");

    let body = json!({"identifier": name, "password": PASSWORD});
    let response = login::handle(&deps, post("/auth/login", &body))
        .await
        .expect("infallible");
    assert_eq!(response.status(), 200);
    let stored = deps
        .store
        .get_user(id)
        .await
        .ok()
        .flatten()
        .expect("the user");
    assert!(
        stored
            .password_hash
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{}",
        &stored.password_hash[..30]
    );
    let stale = deps
        .store
        .upgrade_password_hash(id, &weak, &current.password_hash)
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict)), "{stale:?}");
}

/// `n` simultaneous sign-ins with a wrong password for `identifier`: the answers, and how many
/// passwords were checked.
async fn racing_wrong_passwords(
    deps: &Arc<Deps<DynamoStore>>,
    identifier: &str,
    n: usize,
) -> (Vec<u16>, u64) {
    let before = deps.passwords.verification_count();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let deps = Arc::clone(deps);
            let body = json!({"identifier": identifier, "password": "wrong password"});
            // An address of its own, so the per-address limit of other tests plays no part.
            let req = from_ip(post("/auth/login", &body), "198.51.100.20");
            tokio::spawn(async move { login::handle(&deps, req).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        let response = task.await.expect("task").expect("infallible");
        statuses.push(response.status().as_u16());
    }
    statuses.sort_unstable();
    (statuses, deps.passwords.verification_count() - before)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_twenty_racing_wrong_passwords_at_most_the_threshold_are_checked() {
    // LG-04 under concurrency: each check is reserved, conditionally, before Argon2
    // runs; the rest answer 429 without a check. The clock stands still, so the first lock
    // (1 s) cannot run out while the twenty are still arriving.
    let clock: Arc<dyn shared::clock::Clock> = Arc::new(shared::testing::ManualClock::new());
    let (deps, _) = counted_deps_with(config(), Some(clock)).await;
    let (name, _) = sign_up(&deps).await;
    let (statuses, checked) = racing_wrong_passwords(&deps, &name, 20).await;
    assert_eq!(checked, 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 5);
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 15);
    let user = scan_users()
        .await
        .into_iter()
        .find(|i| attr(i, "username") == name)
        .expect("the user");
    assert_eq!(
        number(&user, "failed_logins"),
        5,
        "refused attempts count nothing"
    );

    // An identifier that names no account locks the same way.
    let (statuses, _) = racing_wrong_passwords(&deps, &unique("ghost"), 20).await;
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 5);
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 15);
}
