//! `POST /auth/password/reset`: email, code and a new password. A wrong, expired, used or
//! exhausted code, or an address without an account, all answer 400 `invalid_code` (FP-07).
//! Every attempt is counted before the comparison, so at most `RESET_CODE_MAX_ATTEMPTS`
//! comparisons are ever made against one code from one client address, and each address gets
//! a bounded number of wrong codes in all (`PROBE_CLIENT_LIMIT`). Success revokes every session, clears the
//! account's sign-in lock and trusts the client's address (see `login`), and does not sign the
//! user in.

use lambda_http::Request;

use crate::domain::{Email, NewPassword};
use crate::error::ApiError;
use crate::handlers::codes::{CodeKind, MatchedCode, check_code};
use crate::handlers::{Deps, Reply, client_ip};
use crate::http::{self, Fields, RequestBody};
use crate::mail::Mail;
use crate::store::{Codes, Limits, StoreError, Users, keys};
use crate::throttle;

endpoint!(reset_password, [POST], Users + Codes + Limits);

/// What a reset takes.
struct Reset {
    email: Email,
    code: String,
    new_password: NewPassword,
}

impl RequestBody for Reset {
    fn read(body: &mut Fields) -> Option<Self> {
        let email = body.required("email", Email::parse);
        let code = body.required_text("code");
        let identifiers = [email.as_ref().map_or("", Email::as_str)];
        let new_password = body.required("new_password", |p| NewPassword::parse(p, &identifiers));
        Some(Self {
            email: email?,
            code: code?,
            new_password: new_password?,
        })
    }
}

async fn reset_password<S: Users + Codes + Limits>(deps: &Deps<S>, req: &Request) -> Reply {
    let Reset {
        email,
        code,
        new_password,
    } = http::read(req)?;
    let now = deps.now();
    let source_ip = client_ip(req);
    let MatchedCode {
        user,
        stored,
        probe,
    } = check_code(deps, CodeKind::Reset, &email, &code, &source_ip).await?;
    let user_id = user.id;
    deps.refund_probe(&probe).await;
    if new_password
        .expose()
        .eq_ignore_ascii_case(user.username.as_str())
    {
        return Err(ApiError::invalid_field(
            "new_password",
            "must not be your username or email",
        ));
    }
    let password_hash = deps.passwords.hash(new_password.expose()).await?;
    // The address that proved control of the mailbox is trusted from now on: its sign-ins
    // answer to a lock of their own, so no third party's failures keep the owner out (the reset
    // also clears the account's lock). Before the reset itself: whoever holds the right code
    // controls the mailbox, whether or not the reset then commits.
    let trust_key = keys::trusted_client(user_id, &deps.client_part(&source_ip));
    deps.store
        .trust_client(&trust_key, now + throttle::TRUSTED_CLIENT_SECS)
        .await?;
    match deps
        .store
        .reset_password(user_id, &stored.hash, &password_hash, deps.now_datetime()?)
        .await
    {
        Ok(()) => {}
        // Used by a concurrent request, or replaced by a newer code: single use.
        Err(StoreError::Conflict) => return Err(ApiError::InvalidCode),
        Err(err) => return Err(err.into()),
    }
    tracing::info!(event = "reset_completed", user_id = %user_id, source_ip = %source_ip);
    deps.send_quietly(
        &Mail::password_changed(user.email.as_str()),
        "password_reset",
    )
    .await;
    let mut response = http::no_content();
    http::clear_token_cookies(&mut response, deps.config.cookies.same_site);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::codes::test_support::mail_deps;
    use crate::handlers::forgot_password;
    use crate::handlers::{login, me};
    use crate::http::Response;
    use crate::testing::ManualClock;
    use crate::testing::MemoryMailer;
    use crate::testing::MemoryStore;

    use crate::testing::{
        PASSWORD, alice, bearer, body_json, event, from_ip, get, post, retry_after,
    };
    use serde_json::{Value, json};
    use std::sync::Arc;
    use time::Duration;

    const NEW_PASSWORD: &str = "a fresh and long passphrase";

    struct Fixture {
        deps: Deps<MemoryStore>,
        mailer: Arc<MemoryMailer>,
        clock: Arc<ManualClock>,
        tokens: Value,
    }

    /// The fixture, and a reset code mailed to Alice.
    async fn fixture_with_code() -> (Fixture, String) {
        let f = fixture().await;
        let code = f.code().await;
        (f, code)
    }

    async fn fixture() -> Fixture {
        let (deps, mailer, clock) = mail_deps(&[("FORGOT_ADDRESS_INTERVAL_SECONDS", "0")]);
        let tokens = alice(&deps).await;
        Fixture {
            deps,
            mailer,
            clock,
            tokens,
        }
    }

    impl Fixture {
        /// Asks for a code and reads it from the mail.
        async fn code(&self) -> String {
            let req = post(
                "/auth/password/forgot",
                &json!({"email": "alice@example.com"}),
            );
            assert_eq!(
                forgot_password::handle(&self.deps, req)
                    .await
                    .expect("ok")
                    .status(),
                202
            );
            let mail = self.mailer.sent().pop().expect("a mail");
            mail.text
                .split("code is: ")
                .nth(1)
                .unwrap_or_default()
                .chars()
                .take(8)
                .collect()
        }

        /// A reset to `NEW_PASSWORD` with `code`, from the client address `ip`.
        async fn reset_from(&self, ip: &str, code: &str) -> Response {
            let body =
                json!({"email": "alice@example.com", "code": code, "new_password": NEW_PASSWORD});
            let req = from_ip(post("/auth/password/reset", &body), ip);
            handle(&self.deps, req).await.expect("infallible")
        }

        /// A reset from `ip` with `code` that must be refused with `invalid_code`.
        async fn refused_from(&self, ip: &str, code: &str, why: &str) {
            let response = self.reset_from(ip, code).await;
            assert_eq!(body_json(&response)["code"], "invalid_code", "{why}");
        }

        async fn reset(&self, code: &str, password: &str) -> Response {
            let body =
                json!({"email": "alice@example.com", "code": code, "new_password": password});
            handle(&self.deps, post("/auth/password/reset", &body))
                .await
                .expect("infallible")
        }

        async fn login_from(&self, ip: &str, password: &str) -> u16 {
            let body = json!({"identifier": "alice", "password": password});
            let req = from_ip(post("/auth/login", &body), ip);
            login::handle(&self.deps, req)
                .await
                .expect("ok")
                .status()
                .as_u16()
        }

        async fn login_status(&self, password: &str) -> u16 {
            let body = json!({"identifier": "alice", "password": password});
            login::handle(&self.deps, post("/auth/login", &body))
                .await
                .expect("ok")
                .status()
                .as_u16()
        }
    }

    fn wrong(code: &str) -> String {
        let last = if code.ends_with('0') { '1' } else { '0' };
        format!("{}{last}", &code[..7])
    }

    #[tokio::test]
    async fn no_third_party_keeps_the_owner_out() {
        // AB-02: whoever controls the mailbox can always get back in, however many wrong
        // passwords others send. A reset clears the lock, and from the address that reset,
        // sign-in answers to a lock of its own that no one else's failures reach.
        let f = fixture().await;
        let (attacker, owner) = ("198.51.100.7", "203.0.113.9");
        for _ in 0..5 {
            assert_eq!(f.login_from(attacker, "wrong password").await, 401);
        }
        assert_eq!(f.login_from(owner, PASSWORD).await, 429, "locked for all");
        // The attacker keeps it locked with one failure at each expiry.
        f.clock.advance(Duration::seconds(1));
        assert_eq!(f.login_from(attacker, "wrong password").await, 401);
        assert_eq!(f.login_from(owner, PASSWORD).await, 429);

        let code = f.code().await;
        let body =
            json!({"email": "alice@example.com", "code": code, "new_password": NEW_PASSWORD});
        let reset = handle(&f.deps, from_ip(post("/auth/password/reset", &body), owner));
        assert_eq!(reset.await.expect("ok").status(), 204);
        // The attacker locks the account again at once...
        for _ in 0..5 {
            assert_eq!(f.login_from(attacker, "wrong password").await, 401);
        }
        assert_eq!(f.login_from(attacker, NEW_PASSWORD).await, 429);
        assert_eq!(f.login_from("192.0.2.1", NEW_PASSWORD).await, 429);
        // ...and the owner signs in anyway, from the address that reset.
        assert_eq!(f.login_from(owner, NEW_PASSWORD).await, 200);
        assert_eq!(f.login_from(owner, NEW_PASSWORD).await, 200);
        // That address's own lock still stops guessing from it.
        for _ in 0..5 {
            assert_eq!(f.login_from(owner, "wrong password").await, 401);
        }
        assert_eq!(f.login_from(owner, NEW_PASSWORD).await, 429);
    }

    #[tokio::test]
    async fn the_sample_event_is_a_reset() {
        let response = handle(&fixture().await.deps, event("reset-password"))
            .await
            .expect("infallible");
        assert_eq!(body_json(&response)["code"], "invalid_code");
    }

    #[tokio::test]
    async fn a_mailed_code_resets_the_password_and_ends_every_session() {
        let (f, code) = fixture_with_code().await;
        let response = f.reset(&code, NEW_PASSWORD).await;
        assert_eq!(response.status(), 204);
        assert!(
            response
                .headers()
                .get("set-cookie")
                .is_some_and(|c| c.to_str().is_ok_and(|c| c.contains("Max-Age=0")))
        );
        assert_eq!(
            f.login_status(PASSWORD).await,
            401,
            "the old password is refused"
        );
        assert_eq!(f.login_status(NEW_PASSWORD).await, 200);
        let me = me::handle(
            &f.deps,
            get("/auth/me", &[("authorization", &bearer(&f.tokens))]),
        )
        .await;
        assert_eq!(me.expect("ok").status(), 401, "old sessions are refused");
        assert_eq!(
            body_json(&f.reset(&code, "yet another passphrase").await)["code"],
            "invalid_code",
            "single use"
        );
        assert_eq!(
            f.mailer.sent().last().map(|m| m.subject.clone()).as_deref(),
            Some("Your password was changed")
        );
    }

    #[tokio::test]
    async fn five_wrong_tries_burn_the_code() {
        let (f, code) = fixture_with_code().await;
        for _ in 0..5 {
            assert_eq!(
                body_json(&f.reset(&wrong(&code), NEW_PASSWORD).await)["code"],
                "invalid_code"
            );
        }
        assert_eq!(
            body_json(&f.reset(&code, NEW_PASSWORD).await)["code"],
            "invalid_code",
            "burned"
        );
        assert_eq!(
            f.login_status(PASSWORD).await,
            200,
            "no change without a valid code"
        );
    }

    #[tokio::test]
    async fn a_third_party_cannot_spend_the_owner_s_tries() {
        // A code's tries count per client address: five wrong codes from elsewhere end the
        // code for that address only, and the owner's right code still works.
        let (f, code) = fixture_with_code().await;
        for _ in 0..5 {
            f.refused_from("198.51.100.7", &wrong(&code), "a wrong code")
                .await;
        }
        f.refused_from("198.51.100.7", &code, "for that address")
            .await;
        let owner = f.reset_from("203.0.113.9", &code).await;
        assert_eq!(owner.status(), 204);
        assert_eq!(f.login_status(NEW_PASSWORD).await, 200);
    }

    #[tokio::test]
    async fn a_code_dies_after_its_total_tries_whatever_the_clients() {
        // FP-09: tries from many addresses add up; past CODE_MAX_ATTEMPTS_TOTAL (20) even the
        // owner's right code fails.
        let (f, code) = fixture_with_code().await;
        for client in 0..4 {
            for _ in 0..5 {
                let ip = format!("198.51.100.{client}");
                f.refused_from(&ip, &wrong(&code), "a wrong code").await;
            }
        }
        f.refused_from("203.0.113.9", &code, "the code is dead")
            .await;
        assert_eq!(f.login_status(NEW_PASSWORD).await, 401);
    }

    #[tokio::test]
    async fn an_email_change_voids_the_code_sent_to_the_old_address() {
        let (f, code) = fixture_with_code().await;
        let change = json!({"email": "alice@example.net", "current_password": PASSWORD});
        let req = crate::testing::authed("PATCH", "/auth/me", &f.tokens, Some(&change));
        let changed = crate::handlers::update_me::handle(&f.deps, req).await;
        assert_eq!(changed.expect("ok").status(), 200);
        // The change takes effect when the new address's code comes back.
        let new_code = f.mailer.code_sent_to("alice@example.net").expect("a code");
        let verify = json!({"email": "alice@example.net", "code": new_code});
        let verified =
            crate::handlers::verify_email::handle(&f.deps, post("/auth/email/verify", &verify));
        assert_eq!(verified.await.expect("ok").status(), 200);
        for email in ["alice@example.com", "alice@example.net"] {
            let body = json!({"email": email, "code": code, "new_password": NEW_PASSWORD});
            let response = handle(&f.deps, post("/auth/password/reset", &body)).await;
            assert_eq!(
                body_json(&response.expect("ok"))["code"],
                "invalid_code",
                "{email}"
            );
        }
    }

    #[tokio::test]
    async fn wrong_codes_are_limited_per_client_address() {
        // AB-03: at most 20 wrong codes per client address per 5 minutes, then 429, whatever
        // the addresses tried.
        let (f, code) = fixture_with_code().await;
        for i in 0..20 {
            let body = json!({"email": format!("user{i}@example.com"), "code": "12345678", "new_password": NEW_PASSWORD});
            let response = handle(&f.deps, post("/auth/password/reset", &body)).await;
            assert_eq!(body_json(&response.expect("ok"))["code"], "invalid_code");
        }
        let limited = f.reset(&code, NEW_PASSWORD).await;
        assert_eq!(limited.status(), 429);
        assert!((1..=300).contains(&retry_after(&limited)));
        f.clock.advance(Duration::seconds(300));
        assert_eq!(
            f.reset(&code, NEW_PASSWORD).await.status(),
            204,
            "next window"
        );
    }

    #[tokio::test]
    async fn expired_replaced_and_malformed_codes_are_refused_alike() {
        let f = fixture().await;
        let first = f.code().await;
        let second = f.code().await;
        assert_eq!(
            body_json(&f.reset(&first, NEW_PASSWORD).await)["code"],
            "invalid_code",
            "replaced"
        );
        f.clock.advance(Duration::seconds(601));
        assert_eq!(
            body_json(&f.reset(&second, NEW_PASSWORD).await)["code"],
            "invalid_code",
            "expired"
        );
        assert_eq!(
            body_json(&f.reset("12ab", NEW_PASSWORD).await)["code"],
            "invalid_code"
        );
        let unknown = json!({"email": "nobody@example.com", "code": "12345678", "new_password": NEW_PASSWORD});
        let response = handle(&f.deps, post("/auth/password/reset", &unknown))
            .await
            .expect("ok");
        assert_eq!(response.status(), 400);
        assert_eq!(body_json(&response)["code"], "invalid_code");
    }

    #[tokio::test]
    async fn the_new_password_must_meet_the_policy() {
        let (f, code) = fixture_with_code().await;
        assert_eq!(f.reset(&code, "password1").await.status(), 422);
        assert_eq!(
            f.reset(&code, NEW_PASSWORD).await.status(),
            204,
            "a refused password burns no attempt"
        );
    }
}
