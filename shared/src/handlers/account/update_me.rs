//! `PATCH /auth/me` (and `PUT`): change the username, email or full name. Changing the email
//! needs `current_password` (RG-04), is announced to the old address, and waits for the new
//! one: a code goes there, and `POST /auth/email/verify` with it switches the account, moving
//! uniqueness in the same transaction; until then `pending_email` shows it and the old address
//! signs in.

use lambda_http::Request;
use lambda_http::http::StatusCode;

use crate::domain::{Email, FullName, Identifier, PasswordAttempt, User, UserRecord, Username};
use crate::error::ApiError;
use crate::handlers::codes::{CodeKind, pending_key, request_quotas, verification_mail};
use crate::handlers::{Deps, Reply, authenticate_live, client_ip, reauthenticate};
use crate::http::{self, Change, Fields, RequestBody};
use crate::mail::Mail;
use crate::store::{Codes, Limits, Sessions, Users};

endpoint!(update_me, [PATCH, PUT], Users + Codes + Limits + Sessions);

/// What a profile update takes: every field optional; `"full_name": null` clears the name.
struct ProfileUpdate {
    username: Option<Username>,
    email: Option<Email>,
    full_name: Change<FullName>,
    current_password: Option<PasswordAttempt>,
}

impl RequestBody for ProfileUpdate {
    fn read(body: &mut Fields) -> Option<Self> {
        let username = body.optional("username", Username::parse);
        let email = body.optional("email", Email::parse);
        let full_name = body.change("full_name", FullName::parse);
        let current_password = body.optional("current_password", PasswordAttempt::parse);
        Some(Self {
            username: username?,
            email: email?,
            full_name: full_name?,
            current_password: current_password?,
        })
    }
}

async fn update_me<S: Users + Codes + Limits + Sessions>(deps: &Deps<S>, req: &Request) -> Reply {
    let caller = authenticate_live(deps, req).await?;
    let user = &caller.user;
    let ProfileUpdate {
        username,
        email,
        full_name,
        current_password,
    } = http::read(req)?;

    let mut updated = user.clone();
    if let Some(username) = username {
        updated.username = username;
    }
    match full_name {
        Change::Keep => {}
        Change::Clear => updated.full_name = None,
        Change::Set(name) => updated.full_name = Some(name),
    }
    let new_email = email.filter(|email| *email != user.email);
    if new_email.is_some() {
        let Some(current_password) = current_password else {
            return Err(ApiError::ReauthenticationRequired);
        };
        reauthenticate(deps, &caller, &current_password).await?;
    }
    // A 409 tells whether a username or an address is taken: it spends a unit of the client's
    // probe budget as registration's does (AB-03), given back when the change goes through.
    let source_ip = client_ip(req);
    let probe = if updated.username != user.username || new_email.is_some() {
        Some(deps.take_probe("register-conflict", &source_ip).await?)
    } else {
        None
    };
    if let Some(new_email) = &new_email {
        email_change_allowed(deps, user, new_email, &source_ip).await?;
    }
    let requested = new_email.is_some();
    let mut mails = Vec::new();
    if let Some(new_email) = new_email {
        // The address changes only once its owner enters the code mailed to it: a typo cannot
        // lock the account out, and the old address keeps signing in meanwhile. Recorded
        // before the other fields: if what follows fails, the retry replaces this code, which
        // nobody has received (the mail goes only after everything is written).
        let (code, stored) = CodeKind::EmailVerification.issue(deps, user.id, &new_email);
        let key = pending_key(deps, &new_email);
        deps.store
            .request_email_change(user.id, &new_email, &stored, &key)
            .await?;
        mails.push((
            Mail::email_changed(user.email.as_str(), new_email.as_str()),
            "email_changed",
        ));
        mails.push((
            verification_mail(deps, &new_email, &code),
            "verification_requested",
        ));
        updated.pending_email = Some(new_email);
    }
    let profile_changes = updated.username != user.username || updated.full_name != user.full_name;
    if profile_changes {
        updated.updated_at = deps.now_datetime()?;
        deps.store.update_profile(user, &updated).await?;
    }
    tracing::info!(event = "profile_updated", user_id = %user.id, email_change_requested = requested);
    if let Some(probe) = &probe {
        deps.refund_probe(probe).await;
    }
    for (mail, kind) in &mails {
        deps.send_quietly(mail, kind).await;
    }
    Ok(http::json(StatusCode::OK, &User::from(&updated)))
}

/// Whether `user` may ask for a change to `new_email`: not someone else's address already (409;
/// the switch checks again, in its transaction), and within the mail quotas that forgot-password
/// and resend obey, for the address and the client (429), since a code goes there.
async fn email_change_allowed<S: Users + Limits>(
    deps: &Deps<S>,
    user: &UserRecord,
    new_email: &Email,
    source_ip: &str,
) -> Result<(), ApiError> {
    let owner = deps
        .store
        .find_user_id(&Identifier::Email(new_email.clone()))
        .await?;
    if owner.is_some_and(|owner| owner != user.id) {
        return Err(ApiError::EmailTaken);
    }
    let now = deps.now();
    let quotas = request_quotas(deps, CodeKind::EmailVerification, new_email, source_ip, now);
    match deps.store.consume(&quotas, now).await? {
        Some(retry_after_secs) => Err(ApiError::TooManyAttempts { retry_after_secs }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::{login, register as registration, verify_email};
    use crate::http::Response;
    use crate::store::Store;
    use crate::testing::{PASSWORD, alice, authed, body_json, deps, post, register, with_alice};
    use serde_json::{Value, json};

    async fn patch(deps: &Deps<impl Store>, tokens: &Value, body: Value) -> Response {
        let req = authed("PATCH", "/auth/me", tokens, Some(&body));
        handle(deps, req).await.expect("infallible")
    }

    #[tokio::test]
    async fn conflicts_spend_the_probe_budget_like_registration() {
        // Issue 27: a signed-in account could test usernames and addresses without limit.
        let config = crate::testing::config_with(&[("PROBE_CLIENT_LIMIT", "3")]);
        let deps = Deps::new(
            config,
            crate::testing::MemoryStore::new(),
            crate::testing::access_keys(),
        );
        let tokens = alice(&deps).await;
        register(&deps, "bob", "bob@example.com", PASSWORD).await;
        for _ in 0..2 {
            let taken = patch(&deps, &tokens, json!({"username": "bob"})).await;
            assert_eq!(body_json(&taken)["code"], "username_taken");
        }
        let taken = json!({"email": "bob@example.com", "current_password": PASSWORD});
        assert_eq!(
            body_json(&patch(&deps, &tokens, taken).await)["code"],
            "email_taken"
        );
        let refused = patch(&deps, &tokens, json!({"username": "carol"})).await;
        assert_eq!(
            body_json(&refused)["code"],
            "too_many_attempts",
            "the budget is spent"
        );
        // A change that goes through gives its unit back; the name alone spends none.
        let named = patch(&deps, &tokens, json!({"full_name": "Alice"})).await;
        assert_eq!(named.status(), 200);
    }

    #[tokio::test]
    async fn email_change_codes_obey_the_mail_quotas() {
        // Issue 27: each change mailed a code to any address, with no cooldown.
        let (deps, tokens) = with_alice().await;
        let change = json!({"email": "alice@new.example", "current_password": PASSWORD});
        assert_eq!(patch(&deps, &tokens, change.clone()).await.status(), 200);
        let again = patch(&deps, &tokens, change).await;
        assert_eq!(
            body_json(&again)["code"],
            "too_many_attempts",
            "one code per interval"
        );
        assert!(crate::testing::retry_after(&again) >= 1);
        let resend = crate::handlers::resend_verification::handle(
            &deps,
            post(
                "/auth/email/verify/resend",
                &json!({"email": "alice@new.example"}),
            ),
        );
        assert_eq!(
            resend.await.expect("ok").status(),
            429,
            "the same quota as resend's"
        );
    }

    #[tokio::test]
    async fn updates_the_name_and_username_and_frees_the_old_username() {
        let (deps, tokens) = with_alice().await;
        let response = patch(
            &deps,
            &tokens,
            json!({"username": "Alicia", "full_name": "Alicia L."}),
        )
        .await;
        assert_eq!(response.status(), 200);
        let body = body_json(&response);
        assert_eq!(
            (body["username"].as_str(), body["full_name"].as_str()),
            (Some("Alicia"), Some("Alicia L."))
        );
        assert_eq!(body["email"], "alice@example.com");
        // The old username is free again; the new one is taken.
        register(&deps, "alice", "other@example.com", PASSWORD).await;
        let taken =
            json!({"username": "ALICIA", "email": "third@example.com", "password": PASSWORD});
        let conflict =
            registration::handle(&deps, crate::testing::post("/auth/register", &taken)).await;
        assert_eq!(body_json(&conflict.expect("ok"))["code"], "username_taken");
        // null clears the full name.
        let cleared = patch(&deps, &tokens, json!({"full_name": null})).await;
        assert_eq!(body_json(&cleared)["full_name"], Value::Null);
    }

    #[tokio::test]
    async fn an_email_change_needs_the_current_password() {
        let mailer = std::sync::Arc::new(crate::testing::MemoryMailer::default());
        let deps = deps().with_mailer(mailer.clone());
        let tokens = alice(&deps).await;
        let missing = patch(&deps, &tokens, json!({"email": "new@example.com"})).await;
        assert_eq!(missing.status(), 403);
        assert_eq!(body_json(&missing)["code"], "reauthentication_required");
        let wrong = patch(
            &deps,
            &tokens,
            json!({"email": "new@example.com", "current_password": "nope nope"}),
        )
        .await;
        assert_eq!(body_json(&wrong)["code"], "invalid_credentials");
        let ok = patch(
            &deps,
            &tokens,
            json!({"email": "New@Example.com", "current_password": PASSWORD}),
        )
        .await;
        assert_eq!(ok.status(), 200);
        // The new address waits for its code; the old one still signs in meanwhile.
        assert_eq!(body_json(&ok)["email"], "alice@example.com");
        assert_eq!(body_json(&ok)["pending_email"], "new@example.com");
        let login = |identifier: &str| {
            let body = json!({"identifier": identifier, "password": PASSWORD});
            login::handle(&deps, crate::testing::post("/auth/login", &body))
        };
        assert_eq!(login("new@example.com").await.expect("ok").status(), 401);
        assert_eq!(login("alice@example.com").await.expect("ok").status(), 200);
        let code = mailer.code_sent_to("new@example.com").expect("a code");
        let wrong_address = json!({"email": "alice@example.com", "code": code});
        let refused = verify_email::handle(&deps, post("/auth/email/verify", &wrong_address));
        assert_eq!(
            refused.await.expect("ok").status(),
            400,
            "bound to the new address"
        );
        let verify = json!({"email": "new@example.com", "code": code});
        let switched = verify_email::handle(&deps, post("/auth/email/verify", &verify));
        let switched = body_json(&switched.await.expect("ok"));
        assert_eq!(switched["email"], "new@example.com");
        assert_eq!(switched["pending_email"], Value::Null);
        assert_eq!(switched["email_verified"], true);
        assert_eq!(login("new@example.com").await.expect("ok").status(), 200);
        assert_eq!(login("alice@example.com").await.expect("ok").status(), 401);

        // RG-04: the old address hears of it, and only of part of the new one.
        let sent = mailer.sent_but_verification();
        assert_eq!(sent.len(), 1, "one notice, none for the refused attempts");
        assert_eq!(sent[0].to, "alice@example.com");
        assert!(
            sent[0].text.contains("n***@example.com"),
            "{}",
            sent[0].text
        );
        assert!(!sent[0].text.contains("new@example.com"));
        let renamed = patch(&deps, &tokens, json!({"full_name": "Alice L."})).await;
        assert_eq!(renamed.status(), 200);
        assert_eq!(
            mailer.sent_but_verification().len(),
            1,
            "a name change mails nobody"
        );
    }

    /// RG-04: 409 `email_taken` at verification if someone took the address meanwhile; the
    /// account keeps its address, and the other account keeps the new one.
    #[tokio::test]
    async fn an_address_taken_before_its_code_comes_back_is_a_conflict() {
        let mailer = std::sync::Arc::new(crate::testing::MemoryMailer::default());
        let deps = deps().with_mailer(mailer.clone());
        let tokens = alice(&deps).await;
        let change = json!({"email": "new@example.com", "current_password": PASSWORD});
        assert_eq!(patch(&deps, &tokens, change).await.status(), 200);
        let code = mailer.code_sent_to("new@example.com").expect("a code");
        register(&deps, "bob", "new@example.com", PASSWORD).await;
        let verify = json!({"email": "new@example.com", "code": code});
        let taken = verify_email::handle(&deps, post("/auth/email/verify", &verify));
        let taken = taken.await.expect("ok");
        assert_eq!(taken.status(), 409);
        assert_eq!(body_json(&taken)["code"], "email_taken");
        let me = patch(&deps, &tokens, json!({})).await;
        assert_eq!(body_json(&me)["email"], "alice@example.com");
        // And an address someone already has is refused at once.
        let again = json!({"email": "new@example.com", "current_password": PASSWORD});
        let refused = patch(&deps, &tokens, again).await;
        assert_eq!(body_json(&refused)["code"], "email_taken");
    }

    #[tokio::test]
    async fn taken_values_unknown_fields_and_bad_types_are_refused() {
        let (deps, tokens) = with_alice().await;
        register(&deps, "bob", "bob@example.com", PASSWORD).await;
        let taken = patch(&deps, &tokens, json!({"username": "BOB"})).await;
        assert_eq!(
            (taken.status().as_u16(), body_json(&taken)["code"].clone()),
            (409, json!("username_taken"))
        );
        let email = patch(
            &deps,
            &tokens,
            json!({"email": "bob@example.com", "current_password": PASSWORD}),
        )
        .await;
        assert_eq!(body_json(&email)["code"], "email_taken");
        // RG-03: no mass assignment.
        let role = patch(&deps, &tokens, json!({"role": "admin", "id": "x"})).await;
        assert_eq!(role.status(), 422);
        let typed = patch(&deps, &tokens, json!({"full_name": 3})).await;
        assert_eq!(body_json(&typed)["errors"]["full_name"], "must be a string");
        let unchanged = patch(&deps, &tokens, json!({})).await;
        assert_eq!(body_json(&unchanged)["username"], "alice");
    }
}
