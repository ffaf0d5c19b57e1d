//! `DELETE /auth/sessions/{id}`: end one of the caller's sessions: its refresh token is refused
//! from then on (its access tokens run out within their short lifetime, as after a logout).
//! An unknown id, an ended session and another user's session all answer the same 404
//! `not_found` (SS-01): the session is looked up in the caller's own partition only. Ending the
//! caller's own session also clears its cookies.

use lambda_http::{Request, RequestExt};
use uuid::Uuid;

use crate::error::ApiError;
use crate::handlers::{Deps, Reply, authenticate_live, authenticated_delivery, client_ip};
use crate::http::{self, TokenDelivery};
use crate::store::{Sessions, Users};

endpoint!(revoke_session, [DELETE], Users + Sessions);

const PATH_PREFIX: &str = "/auth/sessions/";

async fn revoke_session<S: Users + Sessions>(deps: &Deps<S>, req: &Request) -> Reply {
    let caller = authenticate_live(deps, req).await?;
    let sid = session_id(req).ok_or(ApiError::NotFound)?;
    let delivery = authenticated_delivery(req)?;
    let now = deps.now();
    let session = deps
        .store
        .get_session(caller.user.id, &sid)
        .await?
        .filter(|s| deps.session_is_live(s, caller.user.token_version))
        .ok_or(ApiError::NotFound)?;
    deps.store
        .revoke_session(&session.sid, session.user_id, "revoked", now, session.ttl())
        .await?;
    tracing::info!(event = "session_revoked", user_id = %caller.user.id, sid = %session.sid, by_sid = %caller.sid, source_ip = %client_ip(req));
    let mut response = http::no_content();
    if session.sid == caller.sid && delivery == TokenDelivery::Cookie {
        http::clear_token_cookies(&mut response, deps.config.cookies.same_site);
    }
    Ok(response)
}

/// The `{id}` of the route (API Gateway's path parameter, else the path itself), as a session
/// id is written: a lower-case hyphenated UUID. Anything else names no session.
fn session_id(req: &Request) -> Option<String> {
    let params = req.path_parameters();
    let raw = match params.first("id") {
        Some(id) => id.to_owned(),
        None => req.uri().path().strip_prefix(PATH_PREFIX)?.to_owned(),
    };
    let id = Uuid::try_parse(&raw).ok()?.to_string();
    (id == raw).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::{list_sessions, refresh};
    use crate::http::Response;
    use crate::store::Store;
    use crate::testing::{
        PASSWORD, authed, body_json, event, post, register, request, sid, sign_in, with_alice,
    };
    use serde_json::{Value, json};

    async fn revoke(deps: &Deps<impl Store>, tokens: &Value, id: &str) -> Response {
        let req = authed("DELETE", &format!("/auth/sessions/{id}"), tokens, None);
        handle(deps, req).await.expect("infallible")
    }

    async fn refreshes(deps: &Deps<impl Store>, tokens: &Value) -> u16 {
        let body = json!({"refresh_token": tokens["refresh_token"]});
        let response = refresh::handle(deps, post("/auth/refresh", &body))
            .await
            .expect("infallible");
        response.status().as_u16()
    }

    #[test]
    fn the_sample_event_names_a_session() {
        let id = session_id(&event("revoke-session"));
        assert_eq!(id.as_deref(), Some("5b0e6f1c-8a3d-4e7f-9b2c-1d4a6e8f0c3b"));
    }

    #[tokio::test]
    async fn ends_that_session_only() {
        let (deps, laptop) = with_alice().await;
        let phone = sign_in(&deps, "alice").await;
        let response = revoke(&deps, &laptop, &sid(&phone)).await;
        assert_eq!(response.status(), 204, "{}", body_json(&response));
        assert_eq!(
            refreshes(&deps, &phone).await,
            401,
            "the phone is signed out"
        );
        assert_eq!(refreshes(&deps, &laptop).await, 200, "the laptop is not");
        assert_eq!(deps.store.revocation(&sid(&phone)), Some("revoked"));
        let listed = list_sessions::handle(&deps, authed("GET", "/auth/sessions", &laptop, None))
            .await
            .expect("infallible");
        assert_eq!(
            body_json(&listed)["sessions"].as_array().map(Vec::len),
            Some(1)
        );

        let again = revoke(&deps, &laptop, &sid(&phone)).await;
        assert_eq!(again.status(), 404, "an ended session is unknown");
    }

    #[tokio::test]
    async fn unknown_and_foreign_ids_get_the_same_404() {
        let (deps, alice) = with_alice().await;
        let bob = register(&deps, "bob", "bob@example.com", PASSWORD).await;
        let foreign = revoke(&deps, &alice, &sid(&bob)).await;
        let unknown = revoke(&deps, &alice, &Uuid::new_v4().to_string()).await;
        let malformed = revoke(&deps, &alice, "not-a-session").await;
        let upper = revoke(&deps, &alice, &sid(&alice).to_uppercase()).await;
        for response in [&foreign, &unknown, &malformed, &upper] {
            assert_eq!(response.status(), 404);
            assert_eq!(body_json(response)["code"], "not_found");
        }
        assert_eq!(body_json(&foreign), body_json(&unknown), "one answer");
        assert_eq!(refreshes(&deps, &bob).await, 200, "bob's session stands");
    }

    #[tokio::test]
    async fn ending_the_own_session_in_cookie_mode_clears_the_cookies() {
        let (deps, tokens) = with_alice().await;
        let own = sid(&tokens);
        let cookie = format!(
            "__Host-access_token={}",
            tokens["access_token"].as_str().unwrap_or_default()
        );
        let origin = "http://localhost:3000";
        let req = request(
            "DELETE",
            &format!("/auth/sessions/{own}"),
            &[("cookie", cookie.as_str()), ("origin", origin)],
            None,
        );
        let response = handle(&deps, req).await.expect("infallible");
        assert_eq!(response.status(), 204, "{}", body_json(&response));
        crate::testing::assert_cookies_cleared(&response);

        // Without an allowed origin a cookie request changes nothing (CS-01).
        let other = sign_in(&deps, "alice").await;
        let req = request(
            "DELETE",
            &format!("/auth/sessions/{}", sid(&other)),
            &[
                ("cookie", cookie.as_str()),
                ("origin", "https://evil.example"),
            ],
            None,
        );
        let response = handle(&deps, req).await.expect("infallible");
        assert_eq!(response.status(), 403);
        assert_eq!(refreshes(&deps, &other).await, 200);
    }
}
