//! `POST /auth/logout`: end the presented session, or with `"scope": "global"` every session of
//! the user and every access token issued before (RT-06), or with `"scope": "others"` every
//! session but the presented one. Answers 204 and clears the cookies (but for `others`: the
//! asking session goes on); a session logout refuses only a forged or malformed token (401), so
//! logging out twice is 204. `global` and `others` need a live token (RT-06): a refresh token
//! that is unspent and whose session stands, or a valid access token; anything else is 401
//! `invalid_token`.

use lambda_http::Request;
use lambda_http::http::StatusCode;

use crate::domain::UserId;
use crate::error::ApiError;
use crate::handlers::{
    Deps, PresentedRefreshToken, Reply, authenticate_live, client_ip, presented_refresh_token,
    problem_clearing_cookies,
};
use crate::http::{self, Fields, RequestBody, TokenDelivery};
use crate::jwt::{TokenError, TokenUse};
use crate::store::{Sessions, Users};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The presented session only.
    Session,
    /// Every session of the user.
    Global,
    /// Every session of the user but the presented one.
    Others,
}

endpoint!(logout, [POST], Sessions + Users);

/// What a logout takes: the refresh token (unless it comes as the cookie) and the scope.
struct Logout {
    refresh_token: Option<String>,
    scope: Scope,
}

impl RequestBody for Logout {
    fn read(body: &mut Fields) -> Option<Self> {
        let refresh_token = body.optional_text("refresh_token");
        let scope = body.optional("scope", |scope| match scope {
            "session" => Ok(Scope::Session),
            "global" => Ok(Scope::Global),
            "others" => Ok(Scope::Others),
            _ => Err("must be \"session\", \"others\" or \"global\""),
        });
        Some(Self {
            refresh_token: refresh_token?,
            scope: scope?.unwrap_or(Scope::Session),
        })
    }
}

async fn logout<S: Sessions + Users>(deps: &Deps<S>, req: &Request) -> Reply {
    let Logout {
        refresh_token,
        scope,
    } = http::read_or_empty(req)?;
    let presented = presented_refresh_token(deps, req, refresh_token.as_deref())?;
    let clear = presented.as_ref().is_some_and(|p| p.from_cookie)
        || TokenDelivery::of(req)? == TokenDelivery::Cookie;
    let logged_out = || {
        let mut response = http::no_content();
        if clear {
            http::clear_token_cookies(&mut response, deps.config.cookies.same_site);
        }
        response
    };
    let refused = |err: ApiError| {
        if clear {
            Ok(problem_clearing_cookies(deps, &err))
        } else {
            Err(err)
        }
    };
    if scope != Scope::Session {
        let live = match live_session(deps, req, presented.as_ref()).await {
            Ok(live) => live,
            Err(err @ ApiError::InvalidToken) => return refused(err),
            Err(err) => return Err(err),
        };
        if scope == Scope::Others {
            let ended = end_other_sessions(deps, &live).await?;
            tracing::info!(event = "logout", scope = "others", user_id = %live.user_id, sid = %live.sid, ended, source_ip = %client_ip(req));
            // The asking session goes on: its cookies stay.
            return Ok(http::no_content());
        }
        deps.store
            .revoke_all_sessions(live.user_id, live.version)
            .await?;
        tracing::info!(event = "logout", scope = "global", user_id = %live.user_id, sid = %live.sid, source_ip = %client_ip(req));
        return Ok(logged_out());
    }
    let Some(presented) = presented else {
        // Nothing to revoke: a browser whose cookies a first logout already cleared.
        return Ok(logged_out());
    };

    let now = deps.now();
    let claims = match deps
        .tokens()
        .verify(&presented.token, TokenUse::Refresh, now)
    {
        Ok(claims) => claims,
        // An expired session has nothing left to revoke.
        Err(TokenError::Expired) => return Ok(logged_out()),
        Err(TokenError::Invalid) => return refused(ApiError::InvalidToken),
    };
    let user_id = UserId::parse(&claims.sub).ok_or(ApiError::InvalidToken)?;
    deps.store
        .revoke_session(
            &claims.sid,
            user_id,
            "logout",
            now,
            claims.verifiable_until(),
        )
        .await?;
    tracing::info!(event = "logout", scope = "session", user_id = %user_id, sid = %claims.sid, source_ip = %client_ip(req));
    let response = logged_out();
    debug_assert_eq!(response.status(), StatusCode::NO_CONTENT);
    Ok(response)
}

/// The session a `global` or `others` logout comes from, proved live: the refresh token
/// presented is unspent, its session stands and is not older than the user's last revocation
/// point; or, with no refresh token, a valid access token. A token a logout, a rotation or a
/// revocation already ended cannot end the sessions that followed it.
struct LiveSession {
    user_id: UserId,
    version: u64,
    sid: String,
}

async fn live_session<S: Sessions + Users>(
    deps: &Deps<S>,
    req: &Request,
    presented: Option<&PresentedRefreshToken>,
) -> Result<LiveSession, ApiError> {
    let Some(presented) = presented else {
        let caller = authenticate_live(deps, req).await?;
        return Ok(LiveSession {
            user_id: caller.user.id,
            version: caller.user.token_version,
            sid: caller.sid,
        });
    };
    let claims = deps
        .tokens()
        .verify(&presented.token, TokenUse::Refresh, deps.now())
        .map_err(|_| ApiError::InvalidToken)?;
    let user_id = UserId::parse(&claims.sub).ok_or(ApiError::InvalidToken)?;
    let (live, user) = tokio::try_join!(
        deps.store.is_live(&claims.jti, &claims.sid),
        deps.store.get_user(user_id),
    )?;
    let current = user.is_some_and(|user| claims.ver == user.token_version);
    if !live || !current {
        tracing::warn!(event = "logout_refused", user_id = %user_id, sid = %claims.sid, source_ip = %client_ip(req));
        return Err(ApiError::InvalidToken);
    }
    Ok(LiveSession {
        user_id,
        version: claims.ver,
        sid: claims.sid,
    })
}

/// Revokes every live session of the user but `live`'s own, one by one (each revocation is
/// one transaction: the refusal and the record's removal); how many it ended.
async fn end_other_sessions<S: Sessions>(
    deps: &Deps<S>,
    live: &LiveSession,
) -> Result<usize, ApiError> {
    let now = deps.now();
    let others: Vec<_> = deps
        .store
        .list_sessions(live.user_id)
        .await?
        .into_iter()
        .filter(|s| s.sid != live.sid && deps.session_is_live(s, live.version))
        .collect();
    for session in &others {
        deps.store
            .revoke_session(
                &session.sid,
                live.user_id,
                "logout_others",
                now,
                session.ttl(),
            )
            .await?;
    }
    Ok(others.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::{me, refresh};
    use crate::store::Store;
    use crate::testing::{
        PASSWORD, authed, bearer, body_json, cookie_post, deps, event, get, post, register, sid,
        sign_in, with_alice,
    };
    use serde_json::{Value, json};

    async fn logout_with(deps: &Deps<impl Store>, body: Value) -> u16 {
        let response = handle(deps, post("/auth/logout", &body)).await;
        response.expect("infallible").status().as_u16()
    }

    async fn refresh_status(deps: &Deps<impl Store>, tokens: &Value) -> u16 {
        let body = json!({"refresh_token": tokens["refresh_token"]});
        let response = refresh::handle(deps, post("/auth/refresh", &body)).await;
        response.expect("infallible").status().as_u16()
    }

    #[tokio::test]
    async fn the_sample_event_is_a_logout_request() {
        let response = handle(&deps(), event("logout")).await.expect("infallible");
        // Its placeholder is not a token.
        assert_eq!(body_json(&response)["code"], "invalid_token");
    }

    #[tokio::test]
    async fn logout_revokes_the_session_and_is_idempotent() {
        let (deps, tokens) = with_alice().await;
        let body = json!({"refresh_token": tokens["refresh_token"]});
        assert_eq!(logout_with(&deps, body.clone()).await, 204);
        assert_eq!(logout_with(&deps, body).await, 204, "twice is 204");
        assert_eq!(refresh_status(&deps, &tokens).await, 401);
        assert_eq!(
            logout_with(&deps, json!({"refresh_token": "eyJ.eyJ.sig"})).await,
            401
        );
        let bad_scope = json!({"refresh_token": tokens["refresh_token"], "scope": "all"});
        assert_eq!(logout_with(&deps, bad_scope).await, 422);
    }

    #[tokio::test]
    async fn global_logout_refuses_every_session_and_older_access_tokens() {
        let (deps, a) = with_alice().await;
        let b = sign_in(&deps, "alice").await;
        let global = json!({"refresh_token": a["refresh_token"], "scope": "global"});
        assert_eq!(logout_with(&deps, global.clone()).await, 204);
        for tokens in [&a, &b] {
            assert_eq!(refresh_status(&deps, tokens).await, 401);
            let req = get("/auth/me", &[("authorization", &bearer(tokens))]);
            assert_eq!(me::handle(&deps, req).await.expect("ok").status(), 401);
        }
        assert_eq!(
            logout_with(&deps, global).await,
            401,
            "no longer a live token"
        );
    }

    #[tokio::test]
    async fn a_spent_or_revoked_token_cannot_end_the_other_sessions() {
        // RT-06: global logout needs a live token of the user.
        let (deps, a) = with_alice().await;
        let b = sign_in(&deps, "alice").await;
        let c = sign_in(&deps, "alice").await;
        let a_token = json!({"refresh_token": a["refresh_token"]});
        assert_eq!(logout_with(&deps, a_token).await, 204);
        let refreshed = refresh::handle(
            &deps,
            post(
                "/auth/refresh",
                &json!({"refresh_token": b["refresh_token"]}),
            ),
        );
        assert_eq!(
            refreshed.await.expect("ok").status(),
            200,
            "b's token spent"
        );
        for dead in [&a, &b] {
            for scope in ["global", "others"] {
                let body = json!({"refresh_token": dead["refresh_token"], "scope": scope});
                let response = handle(&deps, post("/auth/logout", &body)).await;
                let response = response.expect("infallible");
                assert_eq!(response.status(), 401, "{scope}");
                assert_eq!(body_json(&response)["code"], "invalid_token");
            }
        }
        assert_eq!(refresh_status(&deps, &c).await, 200, "c lives on");
        let me = me::handle(&deps, get("/auth/me", &[("authorization", &bearer(&c))]));
        assert_eq!(me.await.expect("ok").status(), 200);
    }

    #[tokio::test]
    async fn others_ends_every_session_but_the_presented_one() {
        let (deps, a) = with_alice().await;
        let b = sign_in(&deps, "alice").await;
        let c = sign_in(&deps, "alice").await;
        let bob = register(&deps, "bob", "bob@example.com", PASSWORD).await;
        let others = json!({"refresh_token": a["refresh_token"], "scope": "others"});
        let response = handle(&deps, post("/auth/logout", &others))
            .await
            .expect("infallible");
        assert_eq!(response.status(), 204);
        assert!(
            response.headers().get("set-cookie").is_none(),
            "the asking session keeps its cookies"
        );
        assert_eq!(refresh_status(&deps, &b).await, 401);
        assert_eq!(refresh_status(&deps, &c).await, 401);
        assert_eq!(deps.store.revocation(&sid(&b)), Some("logout_others"));
        assert_eq!(
            refresh_status(&deps, &a).await,
            200,
            "the asking session goes on"
        );
        assert_eq!(refresh_status(&deps, &bob).await, 200, "another user's too");
        let me = me::handle(&deps, get("/auth/me", &[("authorization", &bearer(&a))]));
        assert_eq!(
            me.await.expect("ok").status(),
            200,
            "no revocation point was raised"
        );
    }

    /// A logout of `scope` on the strength of an access token alone.
    async fn logout_by_access_token(deps: &Deps<impl Store>, tokens: &Value, scope: &str) -> u16 {
        let body = json!({ "scope": scope });
        let req = authed("POST", "/auth/logout", tokens, Some(&body));
        handle(deps, req).await.expect("ok").status().as_u16()
    }

    #[tokio::test]
    async fn an_access_token_alone_can_end_the_others_or_every_session() {
        let (deps, a) = with_alice().await;
        let b = sign_in(&deps, "alice").await;
        let c = sign_in(&deps, "alice").await;
        // "others" keeps the token's own session...
        assert_eq!(logout_by_access_token(&deps, &c, "others").await, 204);
        assert_eq!(refresh_status(&deps, &a).await, 401);
        assert_eq!(refresh_status(&deps, &c).await, 200);
        // ... "global" ends it too, and a token of an ended session can do it no more.
        let d = sign_in(&deps, "alice").await;
        assert_eq!(logout_by_access_token(&deps, &d, "global").await, 204);
        assert_eq!(refresh_status(&deps, &b).await, 401);
        assert_eq!(logout_by_access_token(&deps, &d, "global").await, 401);
        let nothing = handle(&deps, post("/auth/logout", &json!({"scope": "global"})));
        assert_eq!(nothing.await.expect("ok").status(), 401, "no token at all");
    }

    #[tokio::test]
    async fn a_refresh_cookie_sent_twice_is_refused() {
        let (deps, tokens) = with_alice().await;
        let refresh_token = tokens["refresh_token"].as_str().unwrap_or_default();
        let cookie =
            format!("__Secure-refresh_token=planted; __Secure-refresh_token={refresh_token}");
        let req = cookie_post("/auth/logout", &cookie, Some("http://localhost:3000"));
        let response = handle(&deps, req).await.expect("ok");
        assert_eq!(response.status(), 401);
        assert_eq!(body_json(&response)["code"], "invalid_token");
        assert_eq!(refresh_status(&deps, &tokens).await, 200, "nothing revoked");
    }

    #[tokio::test]
    async fn cookie_logout_checks_the_origin_and_clears_cookies() {
        let (deps, tokens) = with_alice().await;
        let refresh_token = tokens["refresh_token"].as_str().unwrap_or_default();
        let cookie = format!("__Secure-refresh_token={refresh_token}");
        let foreign = cookie_post("/auth/logout", &cookie, Some("https://evil.example"));
        let foreign = handle(&deps, foreign).await.expect("ok");
        assert_eq!(body_json(&foreign)["code"], "csrf_rejected");
        let allowed = cookie_post("/auth/logout", &cookie, Some("http://localhost:3000"));
        let response = handle(&deps, allowed).await.expect("ok");
        assert_eq!(response.status(), 204);
        crate::testing::assert_cookies_cleared(&response);
        // The browser's second logout has no cookie left: still 204.
        let again = cookie_post("/auth/logout", "", Some("http://localhost:3000"));
        assert_eq!(handle(&deps, again).await.expect("ok").status(), 204);
    }
}
