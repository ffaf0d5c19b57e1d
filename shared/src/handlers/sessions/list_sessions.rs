//! `GET /auth/sessions`: the caller's live sessions, newest first, with the caller's own marked
//! `current` (SS-01). One read of the user (authentication) and one Query of the user's
//! session records; expired, idle and revoked sessions are left out even before TTL removes
//! their records.

use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::ApiError;
use crate::handlers::{Caller, Deps, Reply, authenticate_live};
use crate::http::{self};
use crate::store::{SessionRecord, Sessions, Users};

endpoint!(list_sessions, [GET], Users + Sessions);

/// A session as openapi.yaml shows it (its `Session` schema).
#[derive(Serialize)]
struct Session<'a> {
    id: &'a str,
    created_at: String,
    last_used_at: String,
    expires_at: String,
    user_agent: Option<&'a str>,
    current: bool,
}

#[derive(Serialize)]
struct SessionList<'a> {
    sessions: Vec<Session<'a>>,
}

async fn list_sessions<S: Users + Sessions>(deps: &Deps<S>, req: &Request) -> Reply {
    let caller = authenticate_live(deps, req).await?;
    let sessions = live_sessions(deps, &caller).await?;
    let body = SessionList {
        sessions: sessions
            .iter()
            .map(|session| Session {
                id: &session.sid,
                created_at: rfc3339(session.created_at),
                last_used_at: rfc3339(session.last_used_at),
                expires_at: rfc3339(session.expires_at),
                user_agent: session.user_agent.as_deref(),
                current: session.sid == caller.sid,
            })
            .collect(),
    };
    Ok(http::json(StatusCode::OK, &body))
}

/// The caller's sessions that can still refresh, newest first.
pub(crate) async fn live_sessions<S: Sessions>(
    deps: &Deps<S>,
    caller: &Caller,
) -> Result<Vec<SessionRecord>, ApiError> {
    let version = caller.user.token_version;
    let mut sessions = deps.store.list_sessions(caller.user.id).await?;
    sessions.retain(|session| deps.session_is_live(session, version));
    sessions.sort_by(|a, b| (b.created_at, &b.sid).cmp(&(a.created_at, &a.sid)));
    Ok(sessions)
}

fn rfc3339(epoch_secs: u64) -> String {
    i64::try_from(epoch_secs)
        .ok()
        .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::handlers::{change_password, logout, refresh};
    use crate::http::Response;
    use crate::store::Store;
    use crate::testing::{
        PASSWORD, alice, authed, body_json, get, post, register, sid, sign_in, user_id, with_alice,
    };
    use serde_json::{Value, json};

    use time::Duration;

    fn secs(n: u64) -> Duration {
        Duration::seconds(i64::try_from(n).expect("fits"))
    }

    async fn list(deps: &Deps<impl Store>, tokens: &Value) -> Response {
        handle(deps, authed("GET", "/auth/sessions", tokens, None))
            .await
            .expect("infallible")
    }

    async fn ids(deps: &Deps<impl Store>, tokens: &Value) -> Vec<String> {
        let response = list(deps, tokens).await;
        assert_eq!(response.status(), 200, "{}", body_json(&response));
        body_json(&response)["sessions"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|s| s["id"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn lists_each_sign_in_newest_first_and_marks_the_current_one() {
        let (clock, deps) = crate::testing::clocked();
        let first = alice(&deps).await;
        clock.advance(Duration::seconds(60));
        let second = sign_in(&deps, "alice").await;

        let response = list(&deps, &first).await;
        assert_eq!(response.status(), 200);
        let body = body_json(&response);
        let sessions = body["sessions"].as_array().expect("a list");
        assert_eq!(sessions.len(), 2, "{body}");
        assert_eq!(sessions[0]["id"], sid(&second), "newest first");
        assert_eq!(sessions[1]["id"], sid(&first));
        assert_eq!(sessions[0]["current"], false);
        assert_eq!(sessions[1]["current"], true, "the session that asked");
        let created = OffsetDateTime::from_unix_timestamp(clock.unix()).expect("time");
        assert_eq!(
            sessions[0]["created_at"],
            created.format(&Rfc3339).expect("formats")
        );
        assert_eq!(sessions[0]["last_used_at"], sessions[0]["created_at"]);
        let expires = created + secs(deps.config.tokens.refresh_ttl.as_secs());
        assert_eq!(
            sessions[0]["expires_at"],
            expires.format(&Rfc3339).expect("formats")
        );
        assert_eq!(
            sessions[0]["user_agent"], "curl/8.5.0",
            "the sample event's"
        );
        let keys: Vec<&String> = sessions[0].as_object().expect("an object").keys().collect();
        assert_eq!(
            keys,
            [
                "created_at",
                "current",
                "expires_at",
                "id",
                "last_used_at",
                "user_agent"
            ],
            "no client address, hashed or not"
        );
    }

    #[tokio::test]
    async fn a_refresh_moves_last_used_at() {
        let (clock, deps) = crate::testing::clocked();
        let tokens = alice(&deps).await;
        clock.advance(Duration::seconds(90));
        let body = json!({"refresh_token": tokens["refresh_token"]});
        let refreshed = refresh::handle(&deps, post("/auth/refresh", &body))
            .await
            .expect("infallible");
        assert_eq!(refreshed.status(), 200);
        let response = list(&deps, &body_json(&refreshed)).await;
        let session = &body_json(&response)["sessions"][0];
        let now = OffsetDateTime::from_unix_timestamp(clock.unix()).expect("time");
        assert_eq!(
            session["last_used_at"],
            now.format(&Rfc3339).expect("formats")
        );
        assert_ne!(session["created_at"], session["last_used_at"]);
        assert_eq!(session["current"], true);
    }

    #[tokio::test]
    async fn ended_sessions_are_left_out() {
        let (clock, deps) = crate::testing::clocked();
        let first = alice(&deps).await;
        let logged_out = sign_in(&deps, "alice").await;
        let idle = sign_in(&deps, "alice").await;
        let body = json!({"refresh_token": logged_out["refresh_token"]});
        let response = logout::handle(&deps, post("/auth/logout", &body))
            .await
            .expect("infallible");
        assert_eq!(response.status(), 204);
        assert_eq!(
            ids(&deps, &first).await.len(),
            2,
            "the logged-out one is gone"
        );

        // Past the idle timeout, a session no longer counts, though its record is still there
        // (TTL deletion lags); refreshing `first` just before keeps it.
        let idle_timeout = deps.config.sessions.idle_timeout.as_secs();
        clock.advance(secs(idle_timeout - 10));
        let body = json!({"refresh_token": first["refresh_token"]});
        let refreshed = refresh::handle(&deps, post("/auth/refresh", &body))
            .await
            .expect("infallible");
        let first = body_json(&refreshed);
        clock.advance(Duration::seconds(20));
        assert_eq!(ids(&deps, &first).await, [sid(&first)]);
        assert_eq!(
            deps.store
                .list_sessions(user_id(&idle))
                .await
                .expect("lists")
                .len(),
            2
        );

        // A global logout ends every session, this one too.
        let body = json!({"refresh_token": first["refresh_token"], "scope": "global"});
        let response = logout::handle(&deps, post("/auth/logout", &body))
            .await
            .expect("infallible");
        assert_eq!(response.status(), 204);
        let again = sign_in(&deps, "alice").await;
        assert_eq!(ids(&deps, &again).await, [sid(&again)]);
    }

    #[tokio::test]
    async fn sessions_past_their_absolute_expiry_are_left_out() {
        let (clock, deps) = crate::testing::clocked();
        let old = alice(&deps).await;
        let refresh_ttl = deps.config.tokens.refresh_ttl.as_secs();
        clock.advance(secs(refresh_ttl - 60));
        let new = sign_in(&deps, "alice").await;
        // Keep the old one from idling out: only its absolute expiry should end it.
        let user = user_id(&old);
        let mut record = deps
            .store
            .get_session(user, &sid(&old))
            .await
            .expect("reads")
            .expect("kept");
        record.last_used_at = clock.unix().unsigned_abs();
        deps.store.create_session(&record).await.expect("writes");
        assert_eq!(ids(&deps, &new).await.len(), 2);
        clock.advance(Duration::seconds(61));
        assert_eq!(ids(&deps, &new).await, [sid(&new)]);
    }

    #[tokio::test]
    async fn a_password_change_leaves_only_the_session_it_began() {
        let (deps, first) = with_alice().await;
        sign_in(&deps, "alice").await;
        let body =
            json!({"current_password": PASSWORD, "new_password": "an entirely new passphrase"});
        let req = authed("POST", "/auth/password/change", &first, Some(&body));
        let changed = change_password::handle(&deps, req)
            .await
            .expect("infallible");
        assert_eq!(changed.status(), 200);
        let tokens = body_json(&changed);
        assert_eq!(ids(&deps, &tokens).await, [sid(&tokens)]);
    }

    #[tokio::test]
    async fn another_users_sessions_are_never_listed() {
        let (deps, alice) = with_alice().await;
        let bob = register(&deps, "bob", "bob@example.com", PASSWORD).await;
        assert_eq!(ids(&deps, &alice).await, [sid(&alice)]);
        assert_eq!(ids(&deps, &bob).await, [sid(&bob)]);
    }

    #[tokio::test]
    async fn needs_an_access_token() {
        let (deps, tokens) = with_alice().await;
        let refresh_as_access = json!({"access_token": tokens["refresh_token"]});
        let response = list(&deps, &refresh_as_access).await;
        assert_eq!(response.status(), 401);
        let response = handle(&deps, get("/auth/sessions", &[]))
            .await
            .expect("infallible");
        assert_eq!(response.status(), 401);
    }
}
