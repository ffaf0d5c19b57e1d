//! `POST /auth/mfa/totp/undo`: the mailbox's way back (MF-07). The notice mailed when two-step
//! sign-in is turned on carries a single-use code, valid 7 days; with the address and that code,
//! TOTP is turned off and every session ends (204). So whoever controls the mailbox can always
//! get back in, even when someone who knew the password turned it on with an authenticator of
//! their own. The code is checked as every mailed code is: one answer, 400 `invalid_code`, for
//! every failure, and each try counted before the comparison, per code and client and in all.

use lambda_http::Request;

use crate::error::ApiError;
use crate::handlers::codes::{CodeKind, MailedCode, MatchedCode, check_code};
use crate::handlers::{Deps, Reply, client_ip};
use crate::http;
use crate::mail::Mail;
use crate::store::{Codes, Limits, Mfa, StoreError, Users};

endpoint!(mfa_totp_undo, [POST], Users + Codes + Limits + Mfa);

async fn mfa_totp_undo<S: Users + Codes + Limits + Mfa>(deps: &Deps<S>, req: &Request) -> Reply {
    let MailedCode { email, code } = http::read(req)?;
    let source_ip = client_ip(req);
    let matched = check_code(deps, CodeKind::TwoStepUndo, &email, &code, &source_ip).await?;
    let MatchedCode {
        user,
        stored,
        probe,
    } = matched;
    let now = deps.now_datetime()?;
    match deps.store.undo_totp(user.id, &stored.hash, now).await {
        // Spent by a racing request, or TOTP turned off (or on anew) meanwhile.
        Err(StoreError::Conflict) => return Err(ApiError::InvalidCode),
        other => other?,
    }
    deps.refund_probe(&probe).await;
    tracing::warn!(event = "two_step_undone", user_id = %user.id, source_ip = %source_ip);
    let notice = Mail::two_step_off(user.email.as_str());
    deps.send_quietly(&notice, "two_step_changed").await;
    Ok(http::no_content())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::mfa::test_support::*;
    use crate::testing::MemoryMailer;

    /// Alice with TOTP on: the clock, the deps, her tokens and the code the notice mailed her.
    async fn turned_on() -> (Arc<ManualClock>, TestDeps, Value, String) {
        let mailer = Arc::new(MemoryMailer::default());
        let (clock, deps) = clocked();
        let deps = deps.with_mailer(mailer.clone());
        let (tokens, _) = alice_with_totp(&deps).await;
        let notice = (mailer.sent().into_iter())
            .find(|mail| mail.to == "alice@example.com" && mail.subject == "Two-step sign-in is on")
            .expect("the notice");
        assert!(!notice.text.contains("operator"), "{}", notice.text);
        let code = notice
            .text
            .trim_end()
            .rsplit('\n')
            .next()
            .unwrap_or_default();
        (clock, deps, tokens, code.to_owned())
    }

    async fn undo(deps: &TestDeps, email: &str, code: &str) -> (u16, Value) {
        let body = json!({"email": email, "code": code});
        call(handle, deps, post("/auth/mfa/totp/undo", &body)).await
    }

    #[tokio::test]
    async fn the_mailbox_turns_two_step_sign_in_off_and_ends_every_session() {
        // MF-07: someone who knew the password turned TOTP on; the mailbox gets back in.
        let (_, deps, tokens, code) = turned_on().await;
        assert_eq!(code.len(), 8, "{code}");
        let wrong = if code == "00000000" {
            "11111111"
        } else {
            "00000000"
        };
        let (status, body) = undo(&deps, "alice@example.com", wrong).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("invalid_code")));
        assert_eq!(
            undo(&deps, "bob@example.com", &code).await.0,
            400,
            "another address"
        );

        assert_eq!(undo(&deps, "alice@example.com", &code).await.0, 204);
        let user = deps.store.get_user(user_id(&tokens)).await.ok().flatten();
        assert!(user.is_some_and(|user| user.totp.is_none()), "TOTP is off");
        let body = json!({"refresh_token": tokens["refresh_token"]});
        let (status, _) = call(refresh::handle, &deps, post("/auth/refresh", &body)).await;
        assert_eq!(status, 401, "every session ended");
        let password = json!({"identifier": "alice", "password": PASSWORD});
        let (status, body) = call(login::handle, &deps, post("/auth/login", &password)).await;
        assert_eq!(status, 200);
        assert!(
            body.get("access_token").is_some(),
            "the password alone signs in: {body}"
        );
        assert_eq!(
            undo(&deps, "alice@example.com", &code).await.0,
            400,
            "single use"
        );
    }

    #[tokio::test]
    async fn the_code_lasts_seven_days() {
        let (clock, deps, _, code) = turned_on().await;
        clock.advance(Duration::days(7) + Duration::seconds(1));
        assert_eq!(undo(&deps, "alice@example.com", &code).await.0, 400);
    }

    #[tokio::test]
    async fn the_sample_event_is_an_undo() {
        let (status, body) = call(handle, &deps(), event("mfa-totp-undo")).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("invalid_code")));
    }
}
