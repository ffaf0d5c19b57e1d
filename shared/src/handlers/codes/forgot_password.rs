//! `POST /auth/password/forgot`: mail a reset code. The answer is the same 202 whether or not
//! the account exists, whether or not the mail could be sent, and takes at least
//! `FORGOT_MIN_RESPONSE_MS` either way (FP-01); an outage of DynamoDB or SES changes nothing
//! in the answer either. Throttled per address, whether or not it has an
//! account, and per client address (FP-05), with 429 and `Retry-After` (see
//! [`answer_code_request`], which email verification's resend shares).

use lambda_http::Request;

use crate::handlers::codes::{CodeKind, answer_code_request};
use crate::handlers::{Deps, Reply};
use crate::store::{Codes, Limits, Users};

/// The one answer, whatever happened.
pub const ACCEPTED_MESSAGE: &str = CodeKind::Reset.accepted_message();

endpoint!(forgot_password, [POST], Users + Codes + Limits);

async fn forgot_password<S: Users + Codes + Limits>(deps: &Deps<S>, req: &Request) -> Reply {
    answer_code_request(deps, req, CodeKind::Reset).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::codes::test_support::mail_deps;
    use crate::http::Response;
    use crate::outbox::Outbox;

    use crate::testing::MemoryMailer;
    use crate::testing::MemoryStore;
    use crate::testing::access_keys;
    use crate::testing::{alice, body_json, config_with, deps, event, post};
    use serde_json::json;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use time::Duration;

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
        let (deps, mailer, _) = mail_deps(&[("FORGOT_ADDRESS_INTERVAL_SECONDS", "0")]);
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
        let sent = mailer.sent_but_verification();
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
        outbox.flush().await;
        let floor = deps.config.limits.forgot_min_response;
        assert!(floor > std::time::Duration::ZERO);
        for email in ["alice@example.com", "nobody@example.com"] {
            let started = tokio::time::Instant::now();
            let response = forgot(&deps, email).await;
            assert_eq!(response.status(), 202);
            assert_eq!(started.elapsed(), floor, "{email}");
        }
        assert!(
            mailer.sent_but_verification().is_empty(),
            "the mail is still on its way"
        );
        outbox.flush().await;
        let sent = mailer.sent_but_verification();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].to, "alice@example.com");
    }

    #[tokio::test]
    async fn one_mail_per_minute_and_five_per_hour_per_address() {
        let (deps, mailer, clock) = mail_deps(&[]);
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
        // The hourly count is per clock hour: start at the top of the next one, or of the one
        // after when the next is less than the one-minute cooldown away (a test that ran in
        // the last minute of an hour once met the cooldown there).
        let to_next_hour = 3600 - crate::clock::Clock::unix(&*clock) % 3600;
        let to_start = if to_next_hour <= 60 {
            to_next_hour + 3600
        } else {
            to_next_hour
        };
        clock.advance(Duration::seconds(to_start));
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
        let (deps, _, _) = mail_deps(&[("FORGOT_CLIENT_LIMIT", "3")]);
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
        let (deps, _, _) = mail_deps(&[]);
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
