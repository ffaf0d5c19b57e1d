//! `POST /auth/email/verify`: the address and the code mailed to it at registration (or by a
//! resend) mark the address verified; for an email change, the new address and its code switch
//! the account to it (409 `email_taken` if someone took it meanwhile). A wrong, expired, used or exhausted code, or an address
//! without an account or without a pending code, all answer 400 `invalid_code`, with the same
//! reads and writes (see `codes::check_code`).

use lambda_http::Request;
use lambda_http::http::StatusCode;

use crate::domain::User;
use crate::error::ApiError;
use crate::handlers::codes::{CodeKind, MailedCode, check_code, pending_key};
use crate::handlers::{Deps, Reply, client_ip};
use crate::http::{self};
use crate::store::{Codes, Limits, StoreError, Users};

endpoint!(verify_email, [POST], Users + Codes + Limits);

async fn verify_email<S: Users + Codes + Limits>(deps: &Deps<S>, req: &Request) -> Reply {
    let MailedCode { email, code } = http::read(req)?;
    let source_ip = client_ip(req);
    let matched = check_code(deps, CodeKind::EmailVerification, &email, &code, &source_ip).await?;
    let now = deps.now_datetime()?;
    let hash = &matched.stored.hash;
    // The code is bound to the address it was mailed to: a pending change's, or the account's.
    let switches = matched.user.pending_email.as_ref() == Some(&email);
    let outcome = if switches {
        let pending = pending_key(deps, &email);
        deps.store
            .confirm_email_change(&matched.user, hash, &pending, now)
            .await
    } else {
        deps.store.verify_email(matched.user.id, hash, now).await
    };
    let user = match outcome {
        Ok(user) => user,
        // Used by a concurrent request, or replaced by a newer code: single use.
        Err(StoreError::Conflict) => return Err(ApiError::InvalidCode),
        Err(err) => return Err(err.into()),
    };
    deps.refund_probe(&matched.probe).await;
    tracing::info!(event = "email_verified", user_id = %user.id, email_changed = switches, source_ip = %source_ip);
    Ok(http::json(StatusCode::OK, &User::from(&user)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Identifier, UserRecord};
    use crate::handlers::codes::test_support::mail_deps;
    use crate::handlers::{forgot_password, login, register, resend_verification, reset_password};
    use crate::http::Response;
    use crate::jwt::TokenUse;
    use crate::store::Sessions;
    use crate::testing::{
        ManualClock, MemoryMailer, MemoryStore, PASSWORD, access_keys, alice, body_json,
        config_with, from_ip, post,
    };
    use serde_json::json;
    use std::sync::Arc;
    use time::Duration;

    struct Fixture {
        deps: Deps<MemoryStore>,
        mailer: Arc<MemoryMailer>,
        clock: Arc<ManualClock>,
    }

    async fn fixture() -> Fixture {
        let (deps, mailer, clock) = mail_deps(&[("FORGOT_ADDRESS_INTERVAL_SECONDS", "0")]);
        alice(&deps).await;
        Fixture {
            deps,
            mailer,
            clock,
        }
    }

    impl Fixture {
        /// The code of the newest verification mail to `to`.
        fn code(&self, to: &str) -> String {
            let mail = self
                .mailer
                .sent()
                .into_iter()
                .rev()
                .find(|m| m.to == to && m.subject == "Your email verification code")
                .expect("a verification mail");
            mail.html
                .split("<strong>")
                .nth(1)
                .unwrap_or_default()
                .chars()
                .take(8)
                .collect()
        }

        async fn verify_from(&self, ip: &str, email: &str, code: &str) -> Response {
            let req = post("/auth/email/verify", &json!({"email": email, "code": code}));
            handle(&self.deps, from_ip(req, ip))
                .await
                .expect("infallible")
        }

        async fn verify(&self, code: &str) -> Response {
            self.verify_from("198.51.100.7", "alice@example.com", code)
                .await
        }

        async fn resend(&self, email: &str) -> Response {
            let req = post("/auth/email/verify/resend", &json!({"email": email}));
            resend_verification::handle(&self.deps, req)
                .await
                .expect("infallible")
        }

        async fn alice(&self) -> UserRecord {
            let email =
                Identifier::Email(crate::domain::Email::parse("alice@example.com").expect("valid"));
            let id = self.deps.store.find_user_id(&email).await.expect("ok");
            let id = id.expect("alice exists");
            let user = self.deps.store.get_user(id).await.expect("ok");
            user.expect("alice exists")
        }
    }

    fn wrong(code: &str) -> &'static str {
        if code == "00000000" {
            "11111111"
        } else {
            "00000000"
        }
    }

    #[tokio::test]
    async fn registration_mails_a_code_that_verifies_the_address_once() {
        let f = fixture().await;
        assert!(!f.alice().await.email_verified);
        let code = f.code("alice@example.com");
        assert_eq!(code.len(), 8, "{code}");
        let verified = f.verify(&code).await;
        assert_eq!(verified.status(), 200, "{}", body_json(&verified));
        let user = body_json(&verified);
        assert_eq!(user["email_verified"], true);
        assert_eq!(user["email"], "alice@example.com");
        assert!(user.get("password_hash").is_none());
        assert!(f.alice().await.email_verified);
        let again = f.verify(&code).await;
        assert_eq!(again.status(), 400);
        assert_eq!(body_json(&again)["code"], "invalid_code");
    }

    #[tokio::test]
    async fn wrong_unknown_expired_and_malformed_codes_get_one_answer() {
        let f = fixture().await;
        let code = f.code("alice@example.com");
        let wrong_code = f.verify(wrong(&code)).await;
        let unknown = f
            .verify_from("198.51.100.7", "nobody@example.com", &code)
            .await;
        let malformed = f.verify("12ab").await;
        for response in [&wrong_code, &unknown, &malformed] {
            assert_eq!(response.status(), 400);
            assert_eq!(response.body().as_ref(), wrong_code.body().as_ref());
        }
        f.clock.advance(Duration::hours(24));
        assert_eq!(f.verify(&code).await.status(), 400, "expired after a day");
        assert!(!f.alice().await.email_verified);
    }

    #[tokio::test]
    async fn five_wrong_tries_end_a_code_for_that_client_only() {
        let f = fixture().await;
        let code = f.code("alice@example.com");
        for _ in 0..5 {
            let response = f.verify_from("203.0.113.66", "alice@example.com", wrong(&code));
            assert_eq!(response.await.status(), 400);
        }
        let attacker = f.verify_from("203.0.113.66", "alice@example.com", &code);
        assert_eq!(attacker.await.status(), 400, "out of tries there");
        assert!(!f.alice().await.email_verified);
        assert_eq!(
            f.verify(&code).await.status(),
            200,
            "the owner's tries are hers"
        );
    }

    #[tokio::test]
    async fn a_verification_code_is_no_reset_code() {
        let f = fixture().await;
        let code = f.code("alice@example.com");
        let body = json!({"email": "alice@example.com", "code": code, "new_password": "an entirely new passphrase"});
        let reset = reset_password::handle(&f.deps, post("/auth/password/reset", &body));
        assert_eq!(reset.await.expect("infallible").status(), 400);
        assert_eq!(f.verify(&code).await.status(), 200);
    }

    #[tokio::test]
    async fn a_password_reset_verifies_the_address_and_ends_the_pending_code() {
        let f = fixture().await;
        let code = f.code("alice@example.com");
        let forgot = post(
            "/auth/password/forgot",
            &json!({"email": "alice@example.com"}),
        );
        forgot_password::handle(&f.deps, forgot).await.expect("ok");
        let mail = f.mailer.sent().pop().expect("the reset mail");
        let reset_code: String =
            mail.text.split("code is: ").nth(1).unwrap_or_default()[..8].into();
        let body = json!({"email": "alice@example.com", "code": reset_code, "new_password": "an entirely new passphrase"});
        let reset = reset_password::handle(&f.deps, post("/auth/password/reset", &body));
        assert_eq!(reset.await.expect("infallible").status(), 204);
        let user = f.alice().await;
        assert!(user.email_verified);
        assert!(user.verify_code.is_none());
        assert_eq!(f.verify(&code).await.status(), 400);
    }

    #[tokio::test]
    async fn a_resend_answers_alike_and_mails_only_an_address_that_awaits_verification() {
        let f = fixture().await;
        let first = f.code("alice@example.com");
        let pending = f.resend("alice@example.com").await;
        let unknown = f.resend("nobody@example.com").await;
        for response in [&pending, &unknown] {
            assert_eq!(response.status(), 202);
            assert_eq!(
                body_json(response)["message"],
                resend_verification::ACCEPTED_MESSAGE
            );
            assert_eq!(response.body().as_ref(), pending.body().as_ref());
        }
        let second = f.code("alice@example.com");
        assert_eq!(
            f.verify(&first).await.status(),
            400,
            "replaced by the new code"
        );
        assert_eq!(f.verify(&second).await.status(), 200);
        let sent = f.mailer.sent().len();
        let verified = f.resend("alice@example.com").await;
        assert_eq!(verified.status(), 202);
        assert_eq!(verified.body().as_ref(), pending.body().as_ref());
        assert_eq!(f.mailer.sent().len(), sent, "nothing to verify: no mail");
        assert!(f.mailer.sent().iter().all(|m| m.to == "alice@example.com"));
    }

    /// docs/requirements.md, "Other rules": with `REQUIRE_VERIFIED_EMAIL`, registration starts
    /// no session and the right password of an unverified account answers 403 (a wrong one
    /// still 401, first).
    #[tokio::test]
    async fn with_verification_required_sign_in_waits_for_the_code() {
        let mailer = Arc::new(MemoryMailer::default());
        let config = config_with(&[("REQUIRE_VERIFIED_EMAIL", "true")]);
        let deps = Deps::new(config, MemoryStore::new(), access_keys()).with_mailer(mailer.clone());
        let f = Fixture {
            deps,
            mailer,
            clock: Arc::new(ManualClock::new()),
        };
        let body = json!({"username": "alice", "email": "alice@example.com", "password": PASSWORD});
        let registered = register::handle(&f.deps, post("/auth/register", &body))
            .await
            .expect("infallible");
        assert_eq!(registered.status(), 201);
        let registered = body_json(&registered);
        assert_eq!(registered["verification_required"], true);
        assert_eq!(registered["user"]["email_verified"], false);
        assert!(
            registered.get("access_token").is_none() && registered.get("refresh_token").is_none()
        );
        let user = crate::testing::user_id(&registered);
        let sessions = f.deps.store.list_sessions(user).await.expect("lists");
        assert!(sessions.is_empty(), "no session record either");
        let sign_in = |password: &str| {
            let body = json!({"identifier": "alice", "password": password});
            login::handle(&f.deps, post("/auth/login", &body))
        };
        let wrong = sign_in("not the password").await.expect("infallible");
        assert_eq!(wrong.status(), 401);
        let unverified = sign_in(PASSWORD).await.expect("infallible");
        assert_eq!(unverified.status(), 403);
        assert_eq!(body_json(&unverified)["code"], "email_not_verified");
        assert_eq!(f.verify(&f.code("alice@example.com")).await.status(), 200);
        let signed_in = sign_in(PASSWORD).await.expect("infallible");
        assert_eq!(signed_in.status(), 200);
        let access = body_json(&signed_in)["access_token"]
            .as_str()
            .map(str::to_owned);
        let claims = f
            .deps
            .tokens()
            .verify(&access.expect("a token"), TokenUse::Access, f.deps.now())
            .expect("valid");
        assert_eq!(claims.email_verified, Some(true));
    }

    #[tokio::test]
    async fn resends_are_throttled_like_forgot_password() {
        let f = fixture().await;
        let statuses: Vec<u16> = resend_statuses(&f, 7).await;
        assert_eq!(&statuses[..5], &[202; 5], "{statuses:?}");
        assert_eq!(statuses[5], 429, "{statuses:?}");
    }

    async fn resend_statuses(f: &Fixture, n: usize) -> Vec<u16> {
        let mut statuses = Vec::new();
        for _ in 0..n {
            statuses.push(f.resend("alice@example.com").await.status().as_u16());
        }
        statuses
    }
}
