//! Integration tests of the account lifecycle against the local DynamoDB and SES endpoint:
//! reset codes read from the mail the endpoint captured (never from a hook in the code),
//! deletion, email change, lockout. Needs the environment `make test` sets.

use std::sync::Arc;

use crate::common::*;
use serde_json::json;
use shared::clock::Clock;
use shared::handlers::{
    Deps, delete_me, forgot_password, login, refresh, register, resend_verification,
    reset_password, update_me, verify_email,
};
use shared::http::Response;
use shared::store::DynamoStore;
use shared::testing::ManualClock;
use shared::testing::{bearer, body_json, post, request, retry_after};
use time::Duration;

const NEW_PASSWORD: &str = "an entirely new passphrase";

async fn forgot(deps: &Deps<DynamoStore>, email: &str) -> Response {
    let req = post("/auth/password/forgot", &json!({"email": email}));
    forgot_password::handle(deps, req)
        .await
        .expect("infallible")
}

async fn reset(deps: &Deps<DynamoStore>, email: &str, code: &str) -> Response {
    let body = json!({"email": email, "code": code, "new_password": NEW_PASSWORD});
    reset_password::handle(deps, post("/auth/password/reset", &body))
        .await
        .expect("infallible")
}

async fn login_with(deps: &Deps<DynamoStore>, identifier: &str, password: &str) -> Response {
    let body = json!({"identifier": identifier, "password": password});
    login::handle(deps, post("/auth/login", &body))
        .await
        .expect("infallible")
}

fn wrong(code: &str) -> String {
    let last = if code.ends_with('0') { '1' } else { '0' };
    format!("{}{last}", &code[..code.len() - 1])
}

#[tokio::test]
async fn forgot_mail_reset_then_only_the_new_password_works() {
    let (deps, _) = counted_deps_with(mail_config(&[]), None).await;
    let (name, tokens) = sign_up(&deps).await;
    let email = format!("{name}@example.com");
    let answer = forgot(&deps, &email.to_uppercase()).await;
    assert_eq!(answer.status(), 202);

    let mails = mails_to(&email);
    assert_eq!(mails.len(), 1, "one mail");
    let code = mailed_code(&email).expect("a code in the mail");
    assert_eq!(code.len(), 8);
    let users = scan_users().await;
    let stored = users
        .iter()
        .find(|i| attr(i, "email") == email)
        .expect("the user");
    assert!(
        !attr(stored, "reset_code_hash").is_empty()
            && !attr(stored, "reset_code_hash").contains(&code)
    );

    assert_eq!(reset(&deps, &email, &code).await.status(), 204);
    assert_eq!(
        login_with(&deps, &name, PASSWORD).await.status(),
        401,
        "the old password is refused"
    );
    assert_eq!(
        me_status(&deps, &tokens).await,
        401,
        "old access tokens are refused"
    );
    let body = json!({"refresh_token": tokens["refresh_token"]});
    let refreshed = refresh::handle(&deps, post("/auth/refresh", &body)).await;
    assert_eq!(
        refreshed.expect("ok").status(),
        401,
        "old sessions are refused"
    );
    assert_eq!(login_with(&deps, &email, NEW_PASSWORD).await.status(), 200);
    assert_eq!(
        body_json(&reset(&deps, &email, &code).await)["code"],
        "invalid_code",
        "single use"
    );
    let notices = mails_to(&email)
        .into_iter()
        .filter(|(s, _)| s.contains("was changed"))
        .count();
    assert_eq!(notices, 1, "a notice follows the reset");
}

/// Registration mails a code; of eight simultaneous verifications with it exactly one wins,
/// and the address is verified in the table (the code is stored only as its keyed hash).
#[tokio::test]
async fn the_mailed_code_verifies_the_address_once_however_many_race() {
    let (deps, _) = counted_deps_with(mail_config(&[]), None).await;
    let (name, _) = sign_up(&deps).await;
    let email = format!("{name}@example.com");
    let code = verification_code(&email).expect("a verification mail");
    let stored = |users: &[Item]| {
        users
            .iter()
            .find(|i| attr(i, "email") == email)
            .cloned()
            .expect("the user")
    };
    let before = stored(&scan_users().await);
    let hash = attr(&before, "verify_code_hash");
    assert!(!hash.is_empty() && !hash.contains(&code));
    assert!(!before.contains_key("email_verified"));

    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let deps = Arc::clone(&deps);
            let body = json!({"email": email, "code": code});
            tokio::spawn(async move {
                let req = post("/auth/email/verify", &body);
                verify_email::handle(&deps, req).await.expect("infallible")
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.expect("task").status().as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 400, 400, 400, 400, 400, 400, 400]);
    let after = stored(&scan_users().await);
    assert_eq!(
        after.get("email_verified").and_then(|v| v.as_bool().ok()),
        Some(&true)
    );
    assert!(!after.contains_key("verify_code_hash"));

    let resent = resend_verification::handle(
        &deps,
        post("/auth/email/verify/resend", &json!({"email": email})),
    )
    .await
    .expect("infallible");
    assert_eq!(resent.status(), 202);
    assert_eq!(
        all_mails_to(&email).len(),
        1,
        "a verified address gets no new code"
    );
}

#[tokio::test]
async fn five_wrong_codes_burn_it() {
    let (deps, _) = counted_deps_with(mail_config(&[]), None).await;
    let (name, _) = sign_up(&deps).await;
    let email = format!("{name}@example.com");
    assert_eq!(forgot(&deps, &email).await.status(), 202);
    let code = mailed_code(&email).expect("a code");
    for _ in 0..5 {
        assert_eq!(
            body_json(&reset(&deps, &email, &wrong(&code)).await)["code"],
            "invalid_code"
        );
    }
    assert_eq!(
        body_json(&reset(&deps, &email, &code).await)["code"],
        "invalid_code",
        "burned"
    );
    assert_eq!(
        login_with(&deps, &name, PASSWORD).await.status(),
        200,
        "unchanged"
    );
}

#[tokio::test]
async fn an_expired_code_is_refused_even_before_ttl_deletes_it() {
    let clock = Arc::new(ManualClock::new());
    let shared_clock: Arc<dyn Clock> = clock.clone();
    let (deps, _) = counted_deps_with(mail_config(&[]), Some(shared_clock)).await;
    let (name, _) = sign_up(&deps).await;
    let email = format!("{name}@example.com");
    assert_eq!(forgot(&deps, &email).await.status(), 202);
    let code = mailed_code(&email).expect("a code");
    clock.advance(Duration::seconds(601));
    assert_eq!(
        body_json(&reset(&deps, &email, &code).await)["code"],
        "invalid_code"
    );
}

#[tokio::test]
async fn an_unknown_email_gets_the_same_answer_and_no_mail() {
    let (deps, _) = counted_deps_with(mail_config(&[]), None).await;
    let (name, _) = sign_up(&deps).await;
    let known = forgot(&deps, &format!("{name}@example.com")).await;
    let nobody = format!("{}@example.com", unique("nobody"));
    let unknown = forgot(&deps, &nobody).await;
    assert_eq!(
        (known.status().as_u16(), unknown.status().as_u16()),
        (202, 202)
    );
    assert_eq!(known.body().as_ref(), unknown.body().as_ref());
    assert!(mails_to(&nobody).is_empty());
}

#[tokio::test]
async fn a_failed_send_does_not_change_the_answer() {
    // SES-02: the local endpoint, like the SES sandbox, refuses an unverified sender.
    let config = mail_config(&[("MAIL_FROM", "someone@unverified.example")]);
    let (deps, _) = counted_deps_with(config, None).await;
    let (name, _) = sign_up(&deps).await;
    let email = format!("{name}@example.com");
    let answer = forgot(&deps, &email).await;
    assert_eq!(answer.status(), 202);
    assert!(mails_to(&email).is_empty());
    assert!(log_text().contains("mail_failed"), "the failure is logged");
}

#[tokio::test]
async fn deletion_frees_the_email_and_the_username() {
    let (deps, _) = counted_deps().await;
    let (name, tokens) = sign_up(&deps).await;
    let email = format!("{name}@example.com");
    let req = request(
        "DELETE",
        "/auth/me",
        &[("authorization", &bearer(&tokens))],
        Some(&json!({"password": PASSWORD})),
    );
    assert_eq!(
        delete_me::handle(&deps, req).await.expect("ok").status(),
        204
    );
    let items = scan_users().await;
    for pk in [
        format!("EMAIL#{email}"),
        format!("USERNAME#{}", name.to_lowercase()),
    ] {
        assert!(!items.iter().any(|i| attr(i, "pk") == pk), "{pk} is gone");
    }
    assert!(
        !items.iter().any(|i| attr(i, "email") == email),
        "the user is gone"
    );
    let again = register_as(&deps, &name, &email).await;
    assert_eq!(
        again.expect("ok").status(),
        201,
        "both can be registered again"
    );
    assert_eq!(
        me_status(&deps, &tokens).await,
        401,
        "the old token names a deleted user"
    );
}

#[tokio::test]
async fn an_email_change_moves_uniqueness_and_tells_the_old_address() {
    let (deps, _) = counted_deps_with(mail_config(&[]), None).await;
    let (name, tokens) = sign_up(&deps).await;
    let old_email = format!("{name}@example.com");
    let new_email = format!("{}@example.com", unique("moved"));
    // A reset code mailed to the old address before the change...
    assert_eq!(forgot(&deps, &old_email).await.status(), 202);
    let code = mailed_code(&old_email).expect("a reset code");
    let body =
        json!({"email": new_email, "current_password": PASSWORD, "username": format!("{name}X")});
    let req = request(
        "PATCH",
        "/auth/me",
        &[("authorization", &bearer(&tokens))],
        Some(&body),
    );
    let response = update_me::handle(&deps, req).await.expect("ok");
    assert_eq!(response.status(), 200, "{}", body_json(&response));
    // The new address waits for its code: the account keeps the old one meanwhile.
    assert_eq!(body_json(&response)["email"], old_email);
    assert_eq!(body_json(&response)["pending_email"], new_email);
    assert_eq!(login_with(&deps, &old_email, PASSWORD).await.status(), 200);
    assert_eq!(login_with(&deps, &new_email, PASSWORD).await.status(), 401);
    // RG-04: the notice went through SES to the old address, the code to the new one.
    let notices = mails_to(&old_email);
    let subjects: Vec<&str> = notices
        .iter()
        .map(|(subject, _)| subject.as_str())
        .collect();
    assert_eq!(
        subjects.len(),
        2,
        "the reset code, then the notice: {subjects:?}"
    );
    assert_eq!(subjects[1], "Your email address is about to change");
    assert!(mails_to(&new_email).is_empty(), "only the code went there");
    let new_code = verification_code(&new_email).expect("a code to the new address");
    let verify = json!({"email": new_email, "code": new_code});
    let switched = verify_email::handle(&deps, post("/auth/email/verify", &verify))
        .await
        .expect("infallible");
    assert_eq!(switched.status(), 200, "{}", body_json(&switched));
    assert_eq!(body_json(&switched)["email"], new_email);
    assert_eq!(body_json(&switched)["email_verified"], true);
    // ...resets nothing after it: the switch removed it.
    for email in [&old_email, &new_email] {
        let refused = reset(&deps, email, &code).await;
        assert_eq!(body_json(&refused)["code"], "invalid_code", "{email}");
    }
    let user = scan_users()
        .await
        .into_iter()
        .find(|i| attr(i, "email") == new_email)
        .expect("the user");
    assert!(!user.contains_key("reset_code_hash"), "the code is gone");

    let items = scan_users().await;
    let owner = |pk: String| {
        items
            .iter()
            .find(|i| attr(i, "pk") == pk)
            .map(|i| attr(i, "user_id").to_owned())
    };
    let id = tokens["user"]["id"].as_str().map(str::to_owned);
    assert_eq!(owner(format!("EMAIL#{new_email}")), id);
    assert_eq!(owner(format!("USERNAME#{}x", name.to_lowercase())), id);
    assert_eq!(
        owner(format!("EMAIL#{old_email}")),
        None,
        "the old email is free"
    );
    assert_eq!(
        owner(format!("USERNAME#{}", name.to_lowercase())),
        None,
        "the old username is free"
    );

    let taken = register::handle(
        &deps,
        post("/auth/register", &register_body(&unique("u"), &new_email)),
    )
    .await;
    assert_eq!(body_json(&taken.expect("ok"))["code"], "email_taken");
    let freed = register::handle(
        &deps,
        post("/auth/register", &register_body(&name, &old_email)),
    )
    .await;
    assert_eq!(freed.expect("ok").status(), 201);
}

#[tokio::test]
async fn lockout_triggers_answers_429_with_a_sane_retry_after_and_clears() {
    let clock = Arc::new(ManualClock::new());
    let shared_clock: Arc<dyn Clock> = clock.clone();
    let (deps, counter) = counted_deps_with(config(), Some(shared_clock)).await;
    let (name, _) = sign_up(&deps).await;
    for _ in 0..5 {
        assert_eq!(
            login_with(&deps, &name, "wrong password").await.status(),
            401
        );
    }
    let locked = login_with(&deps, &name, PASSWORD).await;
    assert_eq!(locked.status(), 429);
    assert_eq!(body_json(&locked)["code"], "too_many_attempts");
    assert_eq!(retry_after(&locked), 1);
    // More failures after each lock: the lock doubles, never beyond 15 minutes.
    let mut expected = 1;
    for _ in 0..12 {
        clock.advance(Duration::seconds(i64::try_from(expected).unwrap_or(900)));
        assert_eq!(
            login_with(&deps, &name, "wrong password").await.status(),
            401
        );
        expected = (expected * 2).min(900);
        assert_eq!(
            retry_after(&login_with(&deps, &name, PASSWORD).await),
            expected
        );
    }
    // Forgot-password keeps working while locked (LG-04).
    let mail_deps = counted_deps_with(mail_config(&[]), None).await.0;
    assert_eq!(
        forgot(&mail_deps, &format!("{name}@example.com"))
            .await
            .status(),
        202
    );
    clock.advance(Duration::seconds(900));
    counter.reset();
    assert_eq!(
        login_with(&deps, &name, PASSWORD).await.status(),
        200,
        "clears after the wait"
    );
    assert!(
        counter.calls().contains_key("UpdateItem"),
        "the success resets the count"
    );
    assert_eq!(
        login_with(&deps, &name, "wrong password").await.status(),
        401
    );
    assert_eq!(
        login_with(&deps, &name, PASSWORD).await.status(),
        200,
        "one failure locks nothing"
    );
}

#[tokio::test]
async fn security_events_are_single_json_lines_without_secrets() {
    // ER-02, ER-03: each scenario leaves exactly one structured line, and none holds a secret.
    let strict = mail_config(&[("REFRESH_REUSE_INTERVAL_SECONDS", "0")]);
    let (deps, _) = counted_deps_with(strict, None).await;
    let (name, tokens) = sign_up(&deps).await;
    let email = format!("{name}@example.com");
    let user_id = tokens["user"]["id"].as_str().unwrap_or_default().to_owned();

    for _ in 0..5 {
        login_with(&deps, &name, "wrong password").await;
    }
    let body = json!({"refresh_token": tokens["refresh_token"]});
    refresh::handle(&deps, post("/auth/refresh", &body))
        .await
        .expect("ok");
    refresh::handle(&deps, post("/auth/refresh", &body))
        .await
        .expect("ok");
    forgot(&deps, &email).await;
    let code = mailed_code(&email).expect("a code");
    assert_eq!(reset(&deps, &email, &code).await.status(), 204);
    let fresh = body_json(&login_with(&deps, &name, NEW_PASSWORD).await);
    let req = request(
        "DELETE",
        "/auth/me",
        &[("authorization", &bearer(&fresh))],
        Some(&json!({"password": NEW_PASSWORD})),
    );
    assert_eq!(
        delete_me::handle(&deps, req).await.expect("ok").status(),
        204
    );

    let mine: Vec<serde_json::Value> = log_text()
        .lines()
        .filter(|line| line.contains(&user_id))
        .map(|line| serde_json::from_str(line).expect("every log line is one JSON object"))
        .collect();
    let count = |event: &str| mine.iter().filter(|l| l["event"] == event).count();
    assert_eq!(count("login_failed"), 4);
    assert_eq!(count("account_locked"), 1);
    assert_eq!(count("token_reused"), 1);
    assert_eq!(count("reset_requested"), 1);
    assert_eq!(count("reset_completed"), 1);
    assert_eq!(count("login_succeeded"), 1);
    assert_eq!(count("account_deleted"), 1);
    let secrets = [
        PASSWORD.to_owned(),
        NEW_PASSWORD.to_owned(),
        code,
        tokens["refresh_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        fresh["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    ];
    for line in &mine {
        for secret in &secrets {
            assert!(
                !line.to_string().contains(secret.as_str()),
                "a secret in {line}"
            );
        }
    }
}
