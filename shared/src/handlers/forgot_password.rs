//! `POST /auth/password/forgot`: mail a reset code. The answer is the same 202 whether or not
//! the account exists, whether or not the mail could be sent, and takes at least
//! `FORGOT_MIN_RESPONSE_MS` either way (FP-01); an outage of DynamoDB or SES changes nothing
//! in the answer either. Throttled per address, whether or not it has an
//! account, and per client address (FP-05), with 429 and `Retry-After`.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde_json::json;

use super::{Deps, client_ip};
use crate::domain::{Email, Identifier, StoredResetCode};
use crate::error::{ApiError, FieldErrors};
use crate::http::{self, Response, check};
use crate::mail::Mail;
use crate::reset;
use crate::store::{Codes, Limits, StoreError, Users, keys};
use crate::throttle::{Quota, Window};

/// The one answer, whatever happened.
pub const ACCEPTED_MESSAGE: &str =
    "If an account exists for this address, a reset code has been sent to it.";

endpoint!(forgot_password, [POST], Users + Codes + Limits);

#[tracing::instrument(skip_all)]
async fn forgot_password<S: Users + Codes + Limits>(
    deps: &Deps<S>,
    req: &Request,
) -> Result<Response, ApiError> {
    let body = http::json_body(req)?;
    let mut errors = FieldErrors::new();
    body.reject_unknown(&["email"], &mut errors);
    let email = check(
        "email",
        body.required_str("email", &mut errors),
        Email::parse,
        &mut errors,
    );
    let (Some(email), true) = (email, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };

    let source_ip = client_ip(req);
    let started = tokio::time::Instant::now();
    match request_code(deps, &email, &source_ip).await {
        Ok(()) => {}
        Err(err @ ApiError::TooManyAttempts { .. }) => return Err(err),
        // An outage must not answer differently either (FP-01): a 503 only for addresses with an
        // account would tell which have one. No code was sent; the client may ask again.
        Err(err) => tracing::error!(event = "reset_unavailable", code = err.code()),
    }
    tokio::time::sleep_until(started + deps.config.limits.forgot_min_response).await;
    Ok(http::json(
        StatusCode::ACCEPTED,
        &json!({"message": ACCEPTED_MESSAGE}),
    ))
}

/// Throttles, then stores and mails a code if the address has an account. A mail that cannot
/// be sent is logged, not returned (SES-02).
async fn request_code<S: Users + Codes + Limits>(
    deps: &Deps<S>,
    email: &Email,
    source_ip: &str,
) -> Result<(), ApiError> {
    let now = deps.now();
    if let Some(retry_after_secs) = deps
        .store
        .consume(&quotas(deps, email, source_ip, now), now)
        .await?
    {
        tracing::warn!(event = "reset_throttled", source_ip = %source_ip);
        return Err(ApiError::TooManyAttempts { retry_after_secs });
    }
    let Some(user_id) = deps
        .store
        .find_user_id(&Identifier::Email(email.clone()))
        .await?
    else {
        tracing::info!(event = "reset_requested", user_id = "", source_ip = %source_ip);
        return Ok(());
    };
    let code = deps.reset_codes.generate();
    let ttl = deps.config.codes.reset_ttl;
    let stored = StoredResetCode {
        hash: deps.reset_codes.hash(user_id, reset::expose(&code)),
        expires_at: now + ttl.as_secs(),
    };
    match deps.store.store_reset_code(user_id, &stored).await {
        Ok(()) => {}
        // Deleted meanwhile: as if it had never existed.
        Err(StoreError::Conflict) => return Ok(()),
        Err(err) => return Err(err.into()),
    }
    let template = deps.config.mail.reset_url_template.as_deref();
    let mail = Mail::reset_code(
        email.as_str(),
        reset::expose(&code),
        ttl.as_secs() / 60,
        template,
    );
    deps.send_quietly(&mail, "reset_code").await;
    tracing::info!(event = "reset_requested", user_id = %user_id, source_ip = %source_ip);
    Ok(())
}

/// Per client address (a fixed window), and per email address: one mail per interval and a
/// few per hour. Keys name the addresses only through a keyed hash.
fn quotas<S: Users + Codes + Limits>(
    deps: &Deps<S>,
    email: &Email,
    source_ip: &str,
    now: u64,
) -> Vec<Quota> {
    let config = &deps.config;
    let client = Window::at(now, config.limits.client_window.as_secs());
    let hour = Window::at(now, 3600);
    let address = deps.key_part(email.as_str());
    let mut quotas = vec![
        Quota::Counter {
            key: keys::rate("forgot-client", &deps.key_part(source_ip), client.index),
            limit: config.limits.forgot_client_limit,
            resets_at: client.end,
        },
        Quota::Counter {
            key: keys::rate("forgot-address", &address, hour.index),
            limit: config.limits.forgot_address_hourly_limit,
            resets_at: hour.end,
        },
    ];
    let interval = config.limits.forgot_address_interval.as_secs();
    if interval > 0 {
        quotas.push(Quota::Cooldown {
            key: keys::cooldown("forgot", &address),
            until: now + interval,
        });
    }
    quotas
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::Outbox;
    use crate::testing::ManualClock;
    use crate::testing::MemoryMailer;
    use crate::testing::MemoryStore;
    use crate::testing::access_keys;
    use crate::testing::{alice, body_json, config_with, deps, event, post};
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use time::Duration;

    fn quick_deps(
        vars: &[(&str, &str)],
    ) -> (Deps<MemoryStore>, Arc<MemoryMailer>, Arc<ManualClock>) {
        let mailer = Arc::new(MemoryMailer::default());
        let clock = Arc::new(ManualClock::new());
        let mut all = vec![("FORGOT_MIN_RESPONSE_MS", "0")];
        all.extend_from_slice(vars);
        let deps = Deps::new(config_with(&all), MemoryStore::new(), access_keys())
            .with_mailer(mailer.clone())
            .with_clock(clock.clone());
        (deps, mailer, clock)
    }

    async fn forgot(deps: &Deps<MemoryStore>, email: &str) -> Response {
        handle(
            deps,
            post("/auth/password/forgot", &json!({"email": email})),
        )
        .await
        .expect("infallible")
    }

    #[tokio::test]
    async fn the_sample_event_asks_for_a_code() {
        let response = handle(&deps(), event("forgot-password"))
            .await
            .expect("infallible");
        assert_eq!(response.status(), 202);
    }

    #[tokio::test]
    async fn same_answer_whether_or_not_the_account_exists_and_whether_or_not_mail_works() {
        let (deps, mailer, _) = quick_deps(&[("FORGOT_ADDRESS_INTERVAL_SECONDS", "0")]);
        alice(&deps).await;
        let known = forgot(&deps, "ALICE@example.com").await;
        let unknown = forgot(&deps, "nobody@example.com").await;
        mailer.fail.store(true, Ordering::Relaxed);
        let failing = forgot(&deps, "alice@example.com").await;
        for response in [&known, &unknown, &failing] {
            assert_eq!(response.status(), 202, "{}", body_json(response));
            assert_eq!(response.body().as_ref(), known.body().as_ref());
        }
        assert_eq!(body_json(&known)["message"], ACCEPTED_MESSAGE);
        let sent = mailer.sent();
        assert_eq!(sent.len(), 1, "one mail, to the account that exists");
        assert_eq!(sent[0].to, "alice@example.com");
        let code: String = sent[0]
            .text
            .split("code is: ")
            .nth(1)
            .unwrap_or_default()
            .chars()
            .take(8)
            .collect();
        assert!(
            code.len() == 8 && code.bytes().all(|b| b.is_ascii_digit()),
            "{code}"
        );
    }

    /// FP-01: a mail server that takes 2 s must not tell which addresses have an account. With
    /// the send inside the request, the answer for Alice's address took the 2 s.
    #[tokio::test(start_paused = true)]
    async fn a_slow_mail_server_does_not_stretch_the_answer_for_an_existing_account() {
        let mailer = Arc::new(MemoryMailer::default());
        mailer.delay_ms.store(2_000, Ordering::Relaxed);
        let outbox = Arc::new(Outbox::new(mailer.clone()));
        let config = config_with(&[("FORGOT_ADDRESS_INTERVAL_SECONDS", "0")]);
        let deps = Deps::new(config, MemoryStore::new(), access_keys()).with_mailer(outbox.clone());
        alice(&deps).await;
        let floor = deps.config.limits.forgot_min_response;
        assert!(floor > std::time::Duration::ZERO);
        for email in ["alice@example.com", "nobody@example.com"] {
            let started = tokio::time::Instant::now();
            let response = forgot(&deps, email).await;
            assert_eq!(response.status(), 202);
            assert_eq!(started.elapsed(), floor, "{email}");
        }
        assert!(mailer.sent().is_empty(), "the mail is still on its way");
        outbox.flush().await;
        let sent = mailer.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].to, "alice@example.com");
    }

    #[tokio::test]
    async fn one_mail_per_minute_and_five_per_hour_per_address() {
        let (deps, mailer, clock) = quick_deps(&[]);
        alice(&deps).await;
        assert_eq!(forgot(&deps, "alice@example.com").await.status(), 202);
        let again = forgot(&deps, "alice@example.com").await;
        assert_eq!(again.status(), 429);
        let wait: u64 = again.headers()["retry-after"]
            .to_str()
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!((1..=60).contains(&wait), "{wait}");
        // Unknown addresses are throttled alike: a 429 reveals nothing.
        assert_eq!(forgot(&deps, "nobody@example.com").await.status(), 202);
        assert_eq!(forgot(&deps, "nobody@example.com").await.status(), 429);
        // The hourly count is per clock hour: start at the top of the next one.
        clock.advance(Duration::seconds(
            3600 - crate::clock::Clock::unix(&*clock) % 3600,
        ));
        let before = mailer.sent().len();
        let mut statuses = Vec::new();
        for _ in 0..10 {
            statuses.push(forgot(&deps, "alice@example.com").await.status().as_u16());
            clock.advance(Duration::seconds(61));
        }
        assert_eq!(statuses, [202, 202, 202, 202, 202, 429, 429, 429, 429, 429]);
        assert_eq!(mailer.sent().len() - before, 5, "five an hour");
    }

    #[tokio::test]
    async fn per_client_limit() {
        let (deps, _, _) = quick_deps(&[("FORGOT_CLIENT_LIMIT", "3")]);
        let statuses: Vec<u16> = statuses_for_distinct_addresses(&deps, 5).await;
        assert_eq!(statuses, [202, 202, 202, 429, 429]);
    }

    async fn statuses_for_distinct_addresses(deps: &Deps<MemoryStore>, n: usize) -> Vec<u16> {
        let mut statuses = Vec::new();
        for i in 0..n {
            statuses.push(
                forgot(deps, &format!("user{i}@example.com"))
                    .await
                    .status()
                    .as_u16(),
            );
        }
        statuses
    }

    #[tokio::test]
    async fn bad_bodies() {
        let (deps, _, _) = quick_deps(&[]);
        for body in [
            json!({}),
            json!({"email": 5}),
            json!({"email": "nope"}),
            json!({"email": "a@b.co", "x": 1}),
        ] {
            let response = handle(&deps, post("/auth/password/forgot", &body))
                .await
                .expect("ok");
            assert_eq!(response.status(), 422, "{body}");
        }
    }
}
