//! Integration tests of sessions against a real DynamoDB API: rotation, reuse detection,
//! concurrent refreshes, idle and absolute expiry, logout and global revocation, and the
//! revocation records' TTL. Needs the environment `make test` sets.

use std::sync::Arc;

use crate::common::*;
use serde_json::{Value, json};
use shared::clock::Clock;
use shared::handlers::{Deps, list_sessions, login, logout, refresh, revoke_session};
use shared::http::Response;
use shared::store::DynamoStore;
use shared::testing::ManualClock;
use shared::testing::{body_json, expected_calls, post, sid};
use time::Duration;

async fn refresh_with(deps: &Deps<DynamoStore>, token: &Value) -> Response {
    let req = post("/auth/refresh", &json!({"refresh_token": token}));
    refresh::handle(deps, req).await.expect("infallible")
}

async fn sign_in(deps: &Deps<DynamoStore>, name: &str) -> Value {
    let req = post(
        "/auth/login",
        &json!({"identifier": name, "password": PASSWORD}),
    );
    let response = login::handle(deps, req).await.expect("infallible");
    assert_eq!(response.status(), 200);
    body_json(&response)
}

/// The status of a logout with `body`.
async fn logout_status(deps: &Deps<DynamoStore>, body: &Value) -> u16 {
    let response = logout::handle(deps, post("/auth/logout", body)).await;
    response.expect("infallible").status().as_u16()
}

/// `n` refreshes of one token, all in flight at once.
async fn refresh_concurrently(
    deps: &Arc<Deps<DynamoStore>>,
    token: &Value,
    n: usize,
) -> Vec<Response> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (deps, token) = (Arc::clone(deps), token.clone());
            tokio::spawn(async move { refresh_with(&deps, &token).await })
        })
        .collect();
    let mut responses = Vec::new();
    for task in tasks {
        responses.push(task.await.expect("task"));
    }
    responses
}

fn token_item<'a>(items: &'a [Item], pk: &str) -> Vec<&'a Item> {
    items.iter().filter(|i| attr(i, "pk") == pk).collect()
}

fn jti(token: &Value) -> String {
    claims(token)["jti"].as_str().unwrap_or_default().to_owned()
}

fn with_clock() -> (Arc<ManualClock>, Option<Arc<dyn Clock>>) {
    let clock = Arc::new(ManualClock::new());
    (clock.clone(), Some(clock))
}

#[tokio::test]
async fn a_refresh_spends_the_token_in_one_read_and_one_write() {
    let (deps, counter) = counted_deps().await;
    let (_, first) = sign_up(&deps).await;
    let r1 = &first["refresh_token"];
    counter.reset();
    let response = refresh_with(&deps, r1).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        counter.calls(),
        expected_calls(&[("GetItem", 1), ("TransactWriteItems", 1)])
    );
    let second = body_json(&response);
    let r2 = &second["refresh_token"];
    assert_ne!(r1, r2);
    assert_eq!(claims(r2)["sid"], claims(r1)["sid"], "the same session");
    assert_eq!(
        claims(r2)["exp"],
        claims(r1)["exp"],
        "rotation never extends the session"
    );

    let tokens = scan_tokens().await;
    let spent = token_item(&tokens, &format!("RT#{}", jti(r1)));
    assert_eq!(spent.len(), 1);
    assert_eq!(attr(spent[0], "successor_jti"), jti(r2));
    let exp = claims(r1)["exp"].as_u64().unwrap_or(u64::MAX);
    assert_eq!(
        number(spent[0], "ttl"),
        exp + shared::jwt::LEEWAY_SECS,
        "the record outlives the token's last accepted second"
    );
    assert!(
        number(spent[0], "ttl") < 100_000_000_000,
        "TTL in seconds, not milliseconds"
    );

    assert_eq!(refresh_with(&deps, r2).await.status(), 200);
}

#[tokio::test]
async fn a_spent_token_inside_the_reuse_interval_gets_the_same_successor() {
    let (deps, _) = counted_deps().await;
    let (_, first) = sign_up(&deps).await;
    let r1 = &first["refresh_token"];
    let r2 = body_json(&refresh_with(&deps, r1).await)["refresh_token"].clone();
    let again = refresh_with(&deps, r1).await;
    assert_eq!(again.status(), 200);
    assert_eq!(body_json(&again)["refresh_token"], r2);
    assert_eq!(
        refresh_with(&deps, &r2).await.status(),
        200,
        "the successor still works"
    );
}

#[tokio::test]
async fn a_spent_token_after_the_interval_revokes_the_whole_session() {
    // RT-02: the revocation is stored even though the request is refused.
    let (clock, shared_clock) = with_clock();
    let (deps, _) = counted_deps_with(config(), shared_clock).await;
    let (name, first) = sign_up(&deps).await;
    let r1 = &first["refresh_token"];
    let r2 = body_json(&refresh_with(&deps, r1).await)["refresh_token"].clone();
    clock.advance(Duration::seconds(11));
    let reused = refresh_with(&deps, r1).await;
    assert_eq!(reused.status(), 401);
    assert_eq!(body_json(&reused)["code"], "token_reused");
    assert_eq!(
        body_json(&refresh_with(&deps, &r2).await)["code"],
        "invalid_token"
    );

    let sid = claims(r1)["sid"].as_str().unwrap_or_default().to_owned();
    let tokens = scan_tokens().await;
    let revoked = token_item(&tokens, &format!("SESSION#{sid}"));
    assert_eq!(revoked.len(), 1);
    assert_eq!(attr(revoked[0], "reason"), "token_reused");
    let exp = claims(&r2)["exp"].as_u64().unwrap_or(u64::MAX);
    assert_eq!(number(revoked[0], "ttl"), exp + shared::jwt::LEEWAY_SECS);

    let fresh = sign_in(&deps, &name).await;
    assert_ne!(
        claims(&fresh["refresh_token"])["sid"].as_str(),
        Some(sid.as_str())
    );
    assert_eq!(
        refresh_with(&deps, &fresh["refresh_token"]).await.status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_refreshes_mint_exactly_one_successor() {
    // RT-03, grace mode: every winner returns the same successor.
    let (deps, _) = counted_deps().await;
    let (_, first) = sign_up(&deps).await;
    let r1 = first["refresh_token"].clone();
    let mut successors = Vec::new();
    for response in refresh_concurrently(&deps, &r1, 10).await {
        assert_eq!(response.status(), 200, "{}", body_json(&response));
        successors.push(body_json(&response)["refresh_token"].clone());
    }
    successors.dedup();
    assert_eq!(successors.len(), 1, "one successor for all ten");

    let tokens = scan_tokens().await;
    let spent = token_item(&tokens, &format!("RT#{}", jti(&r1)));
    assert_eq!(spent.len(), 1);
    assert_eq!(attr(spent[0], "successor_jti"), jti(&successors[0]));
    let sid = claims(&r1)["sid"].as_str().unwrap_or_default().to_owned();
    assert!(
        token_item(&tokens, &format!("SESSION#{sid}")).is_empty(),
        "not revoked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_strict_mode_concurrent_refreshes_leave_one_winner_and_revoke_the_session() {
    let strict = config_with(&[("REFRESH_REUSE_INTERVAL_SECONDS", "0")]);
    let (deps, _) = counted_deps_with(strict, None).await;
    let (_, first) = sign_up(&deps).await;
    let r1 = first["refresh_token"].clone();
    let mut winners = Vec::new();
    let mut reused = 0;
    for response in refresh_concurrently(&deps, &r1, 10).await {
        match response.status().as_u16() {
            200 => winners.push(body_json(&response)["refresh_token"].clone()),
            401 => {
                assert_eq!(body_json(&response)["code"], "token_reused");
                reused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((winners.len(), reused), (1, 9));
    assert_eq!(
        refresh_with(&deps, &winners[0]).await.status(),
        401,
        "the session is revoked"
    );
}

#[tokio::test]
async fn a_session_idle_longer_than_the_timeout_must_sign_in_again() {
    let idle = config_with(&[("SESSION_IDLE_TIMEOUT_SECONDS", "600")]);
    let (clock, shared_clock) = with_clock();
    let (deps, _) = counted_deps_with(idle, shared_clock).await;
    let (_, first) = sign_up(&deps).await;
    clock.advance(Duration::seconds(599));
    let second = refresh_with(&deps, &first["refresh_token"]).await;
    assert_eq!(second.status(), 200, "used within the timeout");
    clock.advance(Duration::seconds(601));
    let expired = refresh_with(&deps, &body_json(&second)["refresh_token"]).await;
    assert_eq!(expired.status(), 401);
    assert_eq!(body_json(&expired)["code"], "session_expired");
}

#[tokio::test]
async fn refreshing_never_extends_the_absolute_lifetime() {
    let short = config_with(&[("REFRESH_TOKEN_TTL_SECONDS", "3600")]);
    let (clock, shared_clock) = with_clock();
    let (deps, _) = counted_deps_with(short, shared_clock).await;
    let (_, first) = sign_up(&deps).await;
    let mut token = first["refresh_token"].clone();
    let mut previous = 0;
    for elapsed in [900, 1800, 2700, 3500] {
        clock.advance(Duration::seconds(elapsed - previous));
        previous = elapsed;
        let response = refresh_with(&deps, &token).await;
        assert_eq!(response.status(), 200, "after {elapsed} s");
        let body = body_json(&response);
        assert_eq!(
            body["refresh_expires_in"],
            3600 - elapsed,
            "after {elapsed} s"
        );
        token = body["refresh_token"].clone();
    }
    clock.advance(Duration::seconds(200));
    let expired = refresh_with(&deps, &token).await;
    assert_eq!(body_json(&expired)["code"], "session_expired");
}

#[tokio::test]
async fn logout_revokes_the_session_until_its_tokens_expire() {
    // RT-06: the record's TTL is no earlier than the token's expiry.
    let (deps, counter) = counted_deps().await;
    let (_, first) = sign_up(&deps).await;
    let token = &first["refresh_token"];
    counter.reset();
    let body = json!({ "refresh_token": token });
    assert_eq!(logout_status(&deps, &body).await, 204);
    // One transaction: the revocation, and the session's record removed.
    assert_eq!(
        counter.calls(),
        expected_calls(&[("TransactWriteItems", 1)])
    );

    let sid = claims(token)["sid"].as_str().unwrap_or_default().to_owned();
    let tokens = scan_tokens().await;
    let revoked = token_item(&tokens, &format!("SESSION#{sid}"));
    assert_eq!(revoked.len(), 1);
    assert_eq!(attr(revoked[0], "reason"), "logout");
    let exp = claims(token)["exp"].as_u64().unwrap_or(u64::MAX);
    assert_eq!(number(revoked[0], "ttl"), exp + shared::jwt::LEEWAY_SECS);

    assert_eq!(
        body_json(&refresh_with(&deps, token).await)["code"],
        "invalid_token"
    );
    assert_eq!(logout_status(&deps, &body).await, 204, "again");
}

#[tokio::test]
async fn global_logout_refuses_every_refresh_and_every_older_access_token() {
    let (deps, _) = counted_deps().await;
    let (name, a) = sign_up(&deps).await;
    let b = sign_in(&deps, &name).await;
    assert_eq!(me_status(&deps, &a).await, 200);
    let body = json!({"refresh_token": a["refresh_token"], "scope": "global"});
    assert_eq!(logout_status(&deps, &body).await, 204);
    for session in [&a, &b] {
        assert_eq!(
            refresh_with(&deps, &session["refresh_token"])
                .await
                .status(),
            401
        );
        assert_eq!(me_status(&deps, session).await, 401);
    }
    let c = sign_in(&deps, &name).await;
    assert_eq!(me_status(&deps, &c).await, 200, "a new sign-in works");
    assert_eq!(refresh_with(&deps, &c["refresh_token"]).await.status(), 200);
}

// -------------------------------------------------------------------------------------------
// The session list (SS-01): records in the sessions table, one partition per user.

async fn session_ids(deps: &Deps<DynamoStore>, tokens: &Value) -> Vec<String> {
    let req = shared::testing::authed("GET", "/auth/sessions", tokens, None);
    let response = list_sessions::handle(deps, req).await.expect("infallible");
    assert_eq!(response.status(), 200, "{}", body_json(&response));
    let body = body_json(&response);
    let sessions = body["sessions"].as_array().cloned().unwrap_or_default();
    sessions
        .iter()
        .map(|s| s["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn session_records(sid: &str) -> Vec<Item> {
    let table = std::env::var("SESSIONS_TABLE").unwrap_or_default();
    let sk = format!("SESSION#{sid}");
    scan(&table)
        .await
        .into_iter()
        .filter(|item| attr(item, "sk") == sk)
        .collect()
}

#[tokio::test]
async fn the_list_is_one_query_and_follows_sign_ins_refreshes_and_revocations() {
    let (clock, shared_clock) = with_clock();
    let (deps, counter) = counted_deps_with(config(), shared_clock).await;
    let (name, first) = sign_up(&deps).await;
    clock.advance(Duration::seconds(5));
    let second = sign_in(&deps, &name).await;
    clock.advance(Duration::seconds(5));
    let third = sign_in(&deps, &name).await;
    let (s1, s2, s3) = (sid(&first), sid(&second), sid(&third));

    counter.reset();
    assert_eq!(
        session_ids(&deps, &first).await,
        [s3.clone(), s2.clone(), s1.clone()]
    );
    assert_eq!(
        counter.calls(),
        expected_calls(&[("GetItem", 2), ("Query", 1)]),
        "the user and the session's revocation (side by side), then one Query of its sessions: never a Scan"
    );

    // A refresh moves the record's last use in the rotation's own transaction.
    clock.advance(Duration::seconds(30));
    counter.reset();
    let refreshed = refresh_with(&deps, &second["refresh_token"]).await;
    assert_eq!(refreshed.status(), 200);
    assert_eq!(
        counter.calls(),
        expected_calls(&[("GetItem", 1), ("TransactWriteItems", 1)])
    );
    let record = session_records(&s2).await;
    assert_eq!(record.len(), 1);
    assert_eq!(
        number(&record[0], "last_used_at"),
        clock.unix().unsigned_abs()
    );
    let exp = claims(&second["refresh_token"])["exp"]
        .as_u64()
        .unwrap_or_default();
    assert_eq!(
        number(&record[0], "expires_at"),
        exp,
        "rotation keeps the expiry"
    );
    assert_eq!(number(&record[0], "ttl"), exp + shared::jwt::LEEWAY_SECS);
    assert_eq!(
        attr(&record[0], "client").len(),
        32,
        "the address only as a keyed hash"
    );
    assert!(
        !format!("{record:?}").contains("203.0.113"),
        "never the address itself"
    );

    // Ending one session removes its record with the revocation, in one transaction.
    let req = shared::testing::authed("DELETE", &format!("/auth/sessions/{s3}"), &first, None);
    let response = revoke_session::handle(&deps, req)
        .await
        .expect("infallible");
    assert_eq!(response.status(), 204);
    assert!(session_records(&s3).await.is_empty());
    assert_eq!(
        refresh_with(&deps, &third["refresh_token"]).await.status(),
        401
    );
    assert_eq!(session_ids(&deps, &first).await, [s2.clone(), s1.clone()]);

    // Ending the others leaves the asking session alone.
    let body = json!({"refresh_token": first["refresh_token"], "scope": "others"});
    assert_eq!(logout_status(&deps, &body).await, 204);
    let second = body_json(&refreshed);
    assert_eq!(
        refresh_with(&deps, &second["refresh_token"]).await.status(),
        401
    );
    assert_eq!(session_ids(&deps, &first).await, [s1]);
    assert_eq!(
        refresh_with(&deps, &first["refresh_token"]).await.status(),
        200
    );
}

#[tokio::test]
async fn a_session_without_a_record_gets_one_at_its_first_refresh() {
    // Sessions begun before records existed: their first refresh writes the record, dated
    // from the session's sign-in (`auth_time`).
    let deps = deps().await;
    let (_, first) = sign_up(&deps).await;
    let s1 = sid(&first);
    let client = aws_sdk_dynamodb::Client::new(&shared::aws::sdk_config().await);
    let record = session_records(&s1)
        .await
        .pop()
        .expect("registration wrote it");
    let key: Item = [
        ("pk".to_owned(), record["pk"].clone()),
        ("sk".to_owned(), record["sk"].clone()),
    ]
    .into();
    client
        .delete_item()
        .table_name(&deps.config.tables.sessions)
        .set_key(Some(key))
        .send()
        .await
        .expect("deletes");
    let refreshed = refresh_with(&deps, &first["refresh_token"]).await;
    assert_eq!(refreshed.status(), 200);
    let again = session_records(&s1).await;
    assert_eq!(again.len(), 1);
    assert_eq!(
        number(&again[0], "created_at"),
        number(&record, "created_at")
    );
    assert_eq!(
        number(&again[0], "expires_at"),
        number(&record, "expires_at")
    );
    assert_eq!(session_ids(&deps, &body_json(&refreshed)).await, [s1]);
}

#[tokio::test]
async fn a_revocation_racing_refreshes_never_leaves_a_dead_session_listed() {
    // Each refresh's transaction checks the revocation and touches the record; the revocation
    // writes itself and deletes the record: whatever the order, a revoked session has no
    // record afterwards, and at most one refresh wins.
    let deps = deps().await;
    for _ in 0..3 {
        let (name, first) = sign_up(&deps).await;
        let other = sign_in(&deps, &name).await;
        let target = sid(&other);
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let (deps, token) = (Arc::clone(&deps), other["refresh_token"].clone());
            tasks.push(tokio::spawn(async move {
                refresh_with(&deps, &token).await.status().as_u16()
            }));
        }
        let (revoker, path) = (first.clone(), format!("/auth/sessions/{target}"));
        let deps2 = Arc::clone(&deps);
        let revoke = tokio::spawn(async move {
            let req = shared::testing::authed("DELETE", &path, &revoker, None);
            revoke_session::handle(&deps2, req)
                .await
                .expect("infallible")
                .status()
                .as_u16()
        });
        let mut statuses = Vec::new();
        for task in tasks {
            statuses.push(task.await.expect("task"));
        }
        assert_eq!(revoke.await.expect("task"), 204);
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 401),
            "{statuses:?}"
        );
        assert!(session_records(&target).await.is_empty(), "{statuses:?}");
        assert_eq!(session_ids(&deps, &first).await, [sid(&first)]);
    }
}

#[tokio::test]
async fn another_users_session_is_not_found_and_stands() {
    let deps = deps().await;
    let (_, alice) = sign_up(&deps).await;
    let (_, bob) = sign_up(&deps).await;
    let path = format!("/auth/sessions/{}", sid(&bob));
    let req = shared::testing::authed("DELETE", &path, &alice, None);
    let response = revoke_session::handle(&deps, req)
        .await
        .expect("infallible");
    assert_eq!(response.status(), 404);
    assert_eq!(body_json(&response)["code"], "not_found");
    assert_eq!(session_records(&sid(&bob)).await.len(), 1);
    assert_eq!(
        refresh_with(&deps, &bob["refresh_token"]).await.status(),
        200
    );
}
