//! Criterion benches of the hot pieces: token issue and verification, request parsing,
//! validation, password verification. `make bench` runs them and reads their estimates.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use lambda_http::{Body, Request};
use shared::domain::{Email, NewPassword, UserRecord, Username};
use shared::http::read_with;
use shared::jwt::{TokenKeys, TokenUse};
use shared::password::PasswordHasher;
use shared::testing::{access_keys, config};
use time::OffsetDateTime;

fn user() -> UserRecord {
    let username = Username::parse("alice").unwrap_or_else(|_| unreachable!());
    let email = Email::parse("alice@example.com").unwrap_or_else(|_| unreachable!());
    UserRecord::new(
        username,
        email,
        None,
        String::new(),
        OffsetDateTime::now_utc(),
    )
}

fn now() -> u64 {
    OffsetDateTime::now_utc().unix_timestamp().unsigned_abs()
}

fn tokens(c: &mut Criterion) {
    let keys = TokenKeys::new(&config(), access_keys());
    let user = user();
    let token = keys
        .sign(keys.access_claims(&user, "sid", now()))
        .map(|s| s.token)
        .unwrap_or_default();
    let refresh = keys
        .sign(keys.refresh_claims(&user, "sid", now(), now()))
        .map(|s| s.token)
        .unwrap_or_default();
    // Access tokens are RS256, refresh tokens HS256: the two side by side.
    c.bench_function("token_issue", |b| {
        b.iter(|| keys.sign(keys.access_claims(black_box(&user), "sid", now())))
    });
    c.bench_function("token_verify", |b| {
        b.iter(|| keys.verify(black_box(&token), TokenUse::Access, now()))
    });
    c.bench_function("refresh_token_issue", |b| {
        b.iter(|| keys.sign(keys.refresh_claims(black_box(&user), "sid", now(), now())))
    });
    c.bench_function("refresh_token_verify", |b| {
        b.iter(|| keys.verify(black_box(&refresh), TokenUse::Refresh, now()))
    });
}

fn parsing(c: &mut Criterion) {
    let body = r#"{"username":"alice","email":"alice@example.com","password":"correct horse battery staple"}"#;
    let request = || {
        let mut req = Request::new(Body::from(body));
        req.headers_mut().insert(
            "content-type",
            "application/json"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
        );
        req
    };
    let req = request();
    c.bench_function("request_parse", |b| {
        b.iter(|| {
            read_with(black_box(&req), |body| {
                let username = body.required_text("username");
                let email = body.required_text("email");
                let password = body.required_text("password");
                Some((username?, email?, password?))
            })
        })
    });
    c.bench_function("validation", |b| {
        b.iter(|| {
            (
                Username::parse(black_box("alice_01")),
                Email::parse(black_box("Alice@Example.com")),
                NewPassword::parse(black_box("correct horse battery staple"), &["alice"]),
            )
        })
    });
}

fn passwords(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|_| unreachable!());
    let hasher = PasswordHasher::new();
    let stored = runtime
        .block_on(hasher.hash("correct horse battery staple"))
        .unwrap_or_default();
    let mut group = c.benchmark_group("password");
    group.sample_size(10);
    group.bench_function("password_verify", |b| {
        b.iter(|| {
            runtime
                .block_on(hasher.verify(black_box("correct horse battery staple"), Some(&stored)))
        })
    });
    group.finish();
}

criterion_group!(benches, tokens, parsing, passwords);
criterion_main!(benches);
