//! Per-endpoint server time and DynamoDB calls, against the local DynamoDB endpoint, beside the
//! floors measured in the same run: one Argon2id verification, one access token (RS256)
//! verification, one
//! DynamoDB round trip. Run by `make bench` (which starts the endpoint); prints JSON.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared::Config;
use shared::domain::{StoredCode, UserId};
use shared::handlers::{
    Deps, change_password, delete_me, forgot_password, login, logout, me, refresh, register,
    reset_password, update_me,
};
use shared::http::Response;
use shared::jwt::TokenUse;
use shared::mail::SesMailer;
use shared::store::{Codes, DynamoStore, Users};
use shared::testing::CallCounter;
use shared::testing::MemoryStore;
use shared::testing::{PASSWORD, bearer, body_json, config_with, get, post, request};
use uuid::Uuid;

type Dynamo = Deps<DynamoStore>;

/// A handler's answer (it never fails).
fn answered(response: Result<Response, std::convert::Infallible>) -> Response {
    response.unwrap_or_else(|e| match e {})
}

fn median(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples
        .get(samples.len() / 2)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

async fn time<F: Future>(future: F) -> (Duration, F::Output) {
    let start = Instant::now();
    let output = future.await;
    (start.elapsed(), output)
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", &Uuid::new_v4().simple().to_string()[..12])
}

async fn sign_up(deps: &Dynamo) -> Value {
    let name = unique("bench");
    let body =
        json!({"username": name, "email": format!("{name}@example.com"), "password": PASSWORD});
    body_json(&answered(
        register::handle(deps, post("/auth/register", &body)).await,
    ))
}

/// Runs `n` requests built by `prepare` (untimed) and handled by `run` (timed); returns the
/// median time and the DynamoDB calls of one request.
async fn endpoint<P, PF, R, RF>(
    name: &str,
    counter: &CallCounter,
    n: usize,
    prepare: P,
    run: R,
) -> Value
where
    P: Fn() -> PF,
    PF: Future<Output = Value>,
    R: Fn(Value) -> RF,
    RF: Future<Output = Response>,
{
    let mut samples = Vec::new();
    let mut calls = BTreeMap::new();
    let mut status = 0;
    for _ in 0..n {
        let input = prepare().await;
        counter.reset();
        let (elapsed, response) = time(run(input)).await;
        samples.push(elapsed);
        calls = counter.calls();
        status = response.status().as_u16();
        // A refused request would measure the wrong path.
        assert!(
            response.status().is_success(),
            "{name}: status {status}: {}",
            body_json(&response)
        );
    }
    json!({"median_ms": median(samples), "dynamodb_calls": calls, "status": status})
}

#[tokio::main]
async fn main() {
    let from = std::env::var("MAIL_FROM").unwrap_or_default();
    // No minimum answer time and no per-client limits: the benchmark is one client, on purpose.
    let config = config_with(&[
        ("MAIL_FROM", from.as_str()),
        ("FORGOT_MIN_RESPONSE_MS", "0"),
        ("FORGOT_CLIENT_LIMIT", "1000000"),
        ("LOGIN_CLIENT_LIMIT", "1000000"),
    ]);
    let sdk = shared::aws::sdk_config().await;
    let counter = CallCounter::default();
    let store = counter.store(&sdk, &config);
    let mailer = SesMailer::new(aws_sdk_sesv2::Client::new(&sdk), from, None);
    let deps = Arc::new(
        Deps::new(config.clone(), store, shared::testing::access_keys())
            .with_mailer(Arc::new(mailer)),
    );
    let d = &*deps;
    let runs = 15;

    // Floors, in this run.
    let argon = argon2id_verify_ms(d, runs).await;
    let tokens = sign_up(d).await;
    let now = time::OffsetDateTime::now_utc()
        .unix_timestamp()
        .unsigned_abs();
    let access_verify = access_verify_ms(d, &tokens, now);
    let round_trip = dynamodb_round_trip_ms(d).await;

    let mut results = BTreeMap::new();
    results.insert("register", register_costs(d, &counter, runs).await);
    results.insert("login", login_costs(d, &counter, runs, &tokens).await);
    results.insert("me", me_costs(d, &counter, &tokens).await);
    for name in ["refresh", "logout"] {
        results.insert(name, refresh_token_costs(d, &counter, name).await);
    }
    results.insert("update-me", update_me_costs(d, &counter, &tokens).await);
    results.insert(
        "change-password",
        change_password_costs(d, &counter, runs).await,
    );
    results.insert("forgot-password", forgot_password_costs(d, &counter).await);
    results.insert(
        "reset-password",
        reset_password_costs(d, &counter, runs, now).await,
    );
    results.insert("delete-me", delete_me_costs(d, &counter, runs).await);

    let me_cpu = me_in_memory_ms(config).await;

    let report = json!({
        "floors": {
            "argon2id_verify_ms": argon,
            "access_verify_ms": access_verify,
            "dynamodb_round_trip_ms": round_trip,
        },
        "me_in_memory_ms": me_cpu,
        "endpoints": results,
    });
    println!("{report}");
}

/// Floor: one Argon2id verification of the right password against a stored hash (hashed once,
/// untimed), `runs` times; the median in milliseconds.
async fn argon2id_verify_ms(d: &Dynamo, runs: usize) -> f64 {
    let stored = d.passwords.hash(PASSWORD).await.unwrap_or_default();
    let mut argon = Vec::new();
    for _ in 0..runs {
        argon.push(time(d.passwords.verify(PASSWORD, Some(&stored))).await.0);
    }
    median(argon)
}

/// Floor: one access token (RS256) verification, of the access token in `tokens` at `now`,
/// 2000 times; the median in milliseconds.
fn access_verify_ms(d: &Dynamo, tokens: &Value, now: u64) -> f64 {
    let access = tokens["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut access_verify = Vec::new();
    for _ in 0..2000 {
        let start = Instant::now();
        let _ = std::hint::black_box(d.tokens().verify(&access, TokenUse::Access, now));
        access_verify.push(start.elapsed());
    }
    median(access_verify)
}

/// Floor: one DynamoDB round trip (reading a user that does not exist), 50 times; the median
/// in milliseconds.
async fn dynamodb_round_trip_ms(d: &Dynamo) -> f64 {
    let mut round_trips = Vec::new();
    for _ in 0..50 {
        round_trips.push(time(d.store.get_user(UserId::new())).await.0);
    }
    median(round_trips)
}

/// POST /auth/register of a new account, `runs` times.
async fn register_costs(d: &Dynamo, counter: &CallCounter, runs: usize) -> Value {
    endpoint(
        "register",
        counter,
        runs,
        || async { json!({}) },
        |_| async {
            let name = unique("reg");
            let body = json!({
                "username": name, "email": format!("{name}@example.com"), "password": PASSWORD
            });
            answered(register::handle(d, post("/auth/register", &body)).await)
        },
    )
    .await
}

/// POST /auth/login with the username and password of the account `tokens` signed up,
/// `runs` times.
async fn login_costs(d: &Dynamo, counter: &CallCounter, runs: usize, tokens: &Value) -> Value {
    let login_user = tokens["user"]["username"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    endpoint(
        "login",
        counter,
        runs,
        || async { json!({}) },
        |_| {
            let body = json!({"identifier": login_user, "password": PASSWORD});
            async move { answered(login::handle(d, post("/auth/login", &body)).await) }
        },
    )
    .await
}

/// GET /auth/me with the access token in `tokens`, 50 times.
async fn me_costs(d: &Dynamo, counter: &CallCounter, tokens: &Value) -> Value {
    endpoint(
        "me",
        counter,
        50,
        || async { json!({}) },
        |_| async {
            me::handle(d, get("/auth/me", &[("authorization", &bearer(tokens))]))
                .await
                .unwrap_or_else(|e| match e {})
        },
    )
    .await
}

/// POST /auth/refresh or /auth/logout (`name`) with the refresh token of a new account (signed
/// up untimed), 50 times.
async fn refresh_token_costs(d: &Dynamo, counter: &CallCounter, name: &'static str) -> Value {
    endpoint(
        name,
        counter,
        50,
        || sign_up(d),
        |t| async move {
            let req = post(
                &format!("/auth/{name}"),
                &json!({"refresh_token": t["refresh_token"]}),
            );
            answered(match name {
                "refresh" => refresh::handle(d, req).await,
                _ => logout::handle(d, req).await,
            })
        },
    )
    .await
}

/// PATCH /auth/me with a new full name, with the access token in `tokens`, 50 times.
async fn update_me_costs(d: &Dynamo, counter: &CallCounter, tokens: &Value) -> Value {
    endpoint(
        "update-me",
        counter,
        50,
        || async { json!({}) },
        |_| async {
            let body = json!({"full_name": unique("Name ")});
            let req = request(
                "PATCH",
                "/auth/me",
                &[("authorization", &bearer(tokens))],
                Some(&body),
            );
            answered(update_me::handle(d, req).await)
        },
    )
    .await
}

/// POST /auth/password/change of a new account (signed up untimed), `runs` times.
async fn change_password_costs(d: &Dynamo, counter: &CallCounter, runs: usize) -> Value {
    endpoint(
        "change-password",
        counter,
        runs,
        || sign_up(d),
        |t| async move {
            let body =
                json!({"current_password": PASSWORD, "new_password": "another long passphrase"});
            let req = request(
                "POST",
                "/auth/password/change",
                &[("authorization", &bearer(&t))],
                Some(&body),
            );
            answered(change_password::handle(d, req).await)
        },
    )
    .await
}

/// POST /auth/password/forgot for the address of a new account (signed up untimed), 50 times.
async fn forgot_password_costs(d: &Dynamo, counter: &CallCounter) -> Value {
    endpoint(
        "forgot-password",
        counter,
        50,
        || sign_up(d),
        |t| async move {
            let body = json!({"email": t["user"]["email"]});
            answered(forgot_password::handle(d, post("/auth/password/forgot", &body)).await)
        },
    )
    .await
}

/// POST /auth/password/reset of a new account with a reset code stored for it (both untimed;
/// the code valid until ten minutes after `now`), `runs` times.
async fn reset_password_costs(d: &Dynamo, counter: &CallCounter, runs: usize, now: u64) -> Value {
    endpoint(
        "reset-password",
        counter,
        runs,
        || async {
            let t = sign_up(d).await;
            let id =
                UserId::parse(t["user"]["id"].as_str().unwrap_or_default()).unwrap_or_default();
            let code = StoredCode {
                hash: d.reset_codes.hash(id, "12345678"),
                expires_at: now + 600,
            };
            let _ = d.store.store_reset_code(id, &code).await;
            t
        },
        |t| async move {
            let body = json!({
                "email": t["user"]["email"],
                "code": "12345678",
                "new_password": "another long passphrase",
            });
            answered(reset_password::handle(d, post("/auth/password/reset", &body)).await)
        },
    )
    .await
}

/// DELETE /auth/me of a new account (signed up untimed) with its password, `runs` times.
async fn delete_me_costs(d: &Dynamo, counter: &CallCounter, runs: usize) -> Value {
    endpoint(
        "delete-me",
        counter,
        runs,
        || sign_up(d),
        |t| async move {
            let body = json!({"password": PASSWORD});
            let req = request(
                "DELETE",
                "/auth/me",
                &[("authorization", &bearer(&t))],
                Some(&body),
            );
            answered(delete_me::handle(d, req).await)
        },
    )
    .await
}

/// GET /auth/me without the network (over the memory store, for an account registered there
/// untimed), 2000 times: its CPU time beside one access token verification; the median in
/// milliseconds.
async fn me_in_memory_ms(config: Config) -> f64 {
    let memory = Deps::new(config, MemoryStore::new(), shared::testing::access_keys());
    let local = body_json(&answered(
        register::handle(
            &memory,
            post(
                "/auth/register",
                &json!({
                    "username": "cpu", "email": "cpu@example.com", "password": PASSWORD
                }),
            ),
        )
        .await,
    ));
    let mut me_cpu = Vec::new();
    for _ in 0..2000 {
        let req = get("/auth/me", &[("authorization", &bearer(&local))]);
        me_cpu.push(time(me::handle(&memory, req)).await.0);
    }
    median(me_cpu)
}
