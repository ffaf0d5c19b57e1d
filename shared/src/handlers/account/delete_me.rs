//! `DELETE /auth/me`: delete the account. Needs the password (DL-01); removes the user with its
//! email and username in one transaction, which also ends every session and refuses every
//! token (they name a user that no longer exists), and clears the cookies (DL-02). Then the
//! session records go too (best effort: they are already dead, and TTL removes any left).

use lambda_http::Request;

use crate::domain::PasswordAttempt;
use crate::handlers::{Deps, Reply, authenticate_live, client_ip, reauthenticate};
use crate::http::{self};
use crate::store::{Limits, Sessions, Users};

endpoint!(delete_me, [DELETE], Users + Sessions + Limits);

async fn delete_me<S: Users + Sessions + Limits>(deps: &Deps<S>, req: &Request) -> Reply {
    let caller = authenticate_live(deps, req).await?;
    let user = &caller.user;
    let password = http::read_with(req, |body| {
        body.required("password", PasswordAttempt::parse)
    })?;
    reauthenticate(deps, &caller, &password).await?;
    deps.store.delete_user(user).await?;
    tracing::info!(event = "account_deleted", user_id = %user.id, source_ip = %client_ip(req));
    if let Err(err) = deps.store.delete_sessions(user.id).await {
        tracing::warn!(event = "session_records_left", user_id = %user.id, error = %err);
    }
    let mut response = http::no_content();
    http::clear_token_cookies(&mut response, deps.config.cookies.same_site);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::{me, refresh};
    use crate::http::Response;
    use crate::store::Store;
    use crate::testing::{PASSWORD, authed, bearer, body_json, get, register, with_alice};
    use serde_json::{Value, json};

    async fn delete(deps: &Deps<impl Store>, tokens: &Value, body: Value) -> Response {
        let req = authed("DELETE", "/auth/me", tokens, Some(&body));
        handle(deps, req).await.expect("infallible")
    }

    #[tokio::test]
    async fn deletion_needs_the_password_and_frees_everything() {
        let (deps, tokens) = with_alice().await;
        let wrong = delete(&deps, &tokens, json!({"password": "not the password"})).await;
        assert_eq!(body_json(&wrong)["code"], "invalid_credentials");
        assert_eq!(delete(&deps, &tokens, json!({})).await.status(), 422);
        assert_eq!(deps.store.user_count(), 1, "still there");

        crate::testing::sign_in(&deps, "alice").await;
        let user = crate::testing::user_id(&tokens);
        assert_eq!(
            deps.store.list_sessions(user).await.map(|s| s.len()).ok(),
            Some(2)
        );
        let deleted = delete(&deps, &tokens, json!({"password": PASSWORD})).await;
        assert_eq!(deleted.status(), 204);
        let cleared: Vec<_> = deleted.headers().get_all("set-cookie").iter().collect();
        assert_eq!(cleared.len(), 2);
        assert_eq!(deps.store.user_count(), 0);
        let left = deps.store.list_sessions(user).await.map(|s| s.len()).ok();
        assert_eq!(left, Some(0), "the session records are gone too");
        // Old tokens are refused; the email and username can be registered again.
        let me = me::handle(
            &deps,
            get("/auth/me", &[("authorization", &bearer(&tokens))]),
        )
        .await;
        assert_eq!(me.expect("ok").status(), 401);
        let body = json!({"refresh_token": tokens["refresh_token"]});
        let refresh = refresh::handle(&deps, crate::testing::post("/auth/refresh", &body)).await;
        assert_eq!(refresh.expect("ok").status(), 401);
        register(&deps, "alice", "alice@example.com", PASSWORD).await;
        // A second deletion with the old token: 401, never a 500 (DL-03).
        assert_eq!(
            delete(&deps, &tokens, json!({"password": PASSWORD}))
                .await
                .status(),
            401
        );
    }
}
