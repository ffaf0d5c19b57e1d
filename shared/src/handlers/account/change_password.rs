//! `POST /auth/password/change`: verify the current password, store the new one, revoke every
//! other session (PC-01, PC-02, RT-07) and answer with a token response for a fresh session.

use lambda_http::Request;
use lambda_http::http::StatusCode;

use crate::domain::{NewPassword, PasswordAttempt};
use crate::handlers::{
    Deps, Reply, authenticate_live, authenticated_delivery, begin_session, client_ip,
    reauthenticate, session_tokens,
};
use crate::http;
use crate::mail::Mail;
use crate::store::{Limits, Sessions, Users};

endpoint!(change_password, [POST], Users + Limits + Sessions);

async fn change_password<S: Users + Limits + Sessions>(deps: &Deps<S>, req: &Request) -> Reply {
    let caller = authenticate_live(deps, req).await?;
    let mut user = caller.user.clone();
    let identifiers = [user.username.as_str(), user.email.as_str()];
    let (current, new) = http::read_with(req, |body| {
        let current = body.required("current_password", PasswordAttempt::parse);
        let new = body.required("new_password", |p| NewPassword::parse(p, &identifiers));
        if let (Some(current), Some(new)) = (&current, &new)
            && current.expose() == new.expose()
        {
            body.refuse("new_password", "must differ from the current password");
        }
        Some((current?, new?))
    })?;
    // Read before anything is written: a refused header must leave the password as it was.
    let delivery = authenticated_delivery(req)?;
    reauthenticate(deps, &caller, &current).await?;

    let password_hash = deps.passwords.hash(new.expose()).await?;
    let now = deps.now_datetime()?;
    let seen_version = user.token_version;
    user.password_hash = password_hash;
    user.token_version += 1;
    user.updated_at = now;
    // The change and the session it begins, in one write.
    let session = begin_session(deps, req, &user);
    deps.store
        .set_password(user.id, seen_version, &user.password_hash, now, &session)
        .await?;
    tracing::info!(event = "password_changed", user_id = %user.id, source_ip = %client_ip(req));
    deps.send_quietly(
        &Mail::password_changed(user.email.as_str()),
        "password_changed",
    )
    .await;
    session_tokens(
        deps,
        &user,
        &session,
        caller.sign_in,
        delivery,
        StatusCode::OK,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::{login, me, refresh};
    use crate::http::Response;
    use crate::store::Store;
    use crate::testing::MemoryMailer;
    use crate::testing::{
        PASSWORD, alice, authed, bearer, body_json, deps, from_ip, get, post, retry_after, sign_in,
        with_alice,
    };
    use serde_json::{Value, json};
    use std::sync::Arc;

    async fn change(deps: &Deps<impl Store>, tokens: &Value, body: Value) -> Response {
        let req = authed("POST", "/auth/password/change", tokens, Some(&body));
        handle(deps, req).await.expect("infallible")
    }

    #[tokio::test]
    async fn a_change_revokes_other_sessions_and_signs_in_afresh() {
        let mailer = Arc::new(MemoryMailer::default());
        let deps = deps().with_mailer(mailer.clone());
        let a = alice(&deps).await;
        let b = sign_in(&deps, "alice").await;
        let body = json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"});
        let response = change(&deps, &a, body).await;
        assert_eq!(response.status(), 200);
        let fresh = body_json(&response);
        for old in [&a, &b] {
            let me = me::handle(&deps, get("/auth/me", &[("authorization", &bearer(old))])).await;
            assert_eq!(me.expect("ok").status(), 401);
            let refreshed = refresh::handle(
                &deps,
                post(
                    "/auth/refresh",
                    &json!({"refresh_token": old["refresh_token"]}),
                ),
            );
            assert_eq!(refreshed.await.expect("ok").status(), 401);
        }
        let me = me::handle(
            &deps,
            get("/auth/me", &[("authorization", &bearer(&fresh))]),
        )
        .await;
        assert_eq!(me.expect("ok").status(), 200, "the new session works");
        let old_login = post(
            "/auth/login",
            &json!({"identifier": "alice", "password": PASSWORD}),
        );
        assert_eq!(
            login::handle(&deps, old_login).await.expect("ok").status(),
            401
        );
        let sent = mailer.sent_but_verification();
        assert_eq!(sent.len(), 1);
        assert_eq!(
            (sent[0].to.as_str(), sent[0].subject.as_str()),
            ("alice@example.com", "Your password was changed")
        );
    }

    #[tokio::test]
    async fn each_session_has_its_own_lock_and_others_failures_do_not_block_it() {
        // A stolen access token guesses no faster than the sign-in form allows; a third party
        // locking the account does not keep its owner from changing the password.
        let (deps, a) = with_alice().await;
        let b = sign_in(&deps, "alice").await;
        for _ in 0..5 {
            let body = json!({"identifier": "alice", "password": "wrong password"});
            let req = from_ip(post("/auth/login", &body), "198.51.100.7");
            assert_eq!(login::handle(&deps, req).await.expect("ok").status(), 401);
        }
        let wrong =
            json!({"current_password": "wrong one", "new_password": "a brand new passphrase"});
        for _ in 0..5 {
            assert_eq!(change(&deps, &a, wrong.clone()).await.status(), 401);
        }
        let before = deps.passwords.verification_count();
        let right = json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"});
        let locked = change(&deps, &a, right.clone()).await;
        assert_eq!(locked.status(), 429);
        assert_eq!(retry_after(&locked), 1);
        assert_eq!(deps.passwords.verification_count(), before, "not checked");
        assert_eq!(
            change(&deps, &b, right).await.status(),
            200,
            "another session"
        );
    }

    #[tokio::test]
    async fn wrong_current_weak_or_unchanged_passwords_are_refused() {
        let (deps, tokens) = with_alice().await;
        let wrong = change(
            &deps,
            &tokens,
            json!({"current_password": "wrong one", "new_password": "a brand new passphrase"}),
        )
        .await;
        assert_eq!(
            (wrong.status().as_u16(), body_json(&wrong)["code"].clone()),
            (401, json!("invalid_credentials"))
        );
        let weak = change(
            &deps,
            &tokens,
            json!({"current_password": PASSWORD, "new_password": "password1"}),
        )
        .await;
        assert_eq!(body_json(&weak)["code"], "validation_failed");
        let same = change(
            &deps,
            &tokens,
            json!({"current_password": PASSWORD, "new_password": PASSWORD}),
        )
        .await;
        assert_eq!(
            body_json(&same)["errors"]["new_password"],
            "must differ from the current password"
        );
        assert_eq!(
            sign_in(&deps, "alice").await["user"]["username"],
            "alice",
            "the password is unchanged"
        );
    }
}
