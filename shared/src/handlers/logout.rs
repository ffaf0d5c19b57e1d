//! `POST /auth/logout`: end the presented session, or with `"scope": "global"` every session of
//! the user and every access token issued before (RT-06). Answers 204 and clears the cookies;
//! only a forged or malformed token is refused (401), so logging out twice is 204.

use lambda_http::Request;
use lambda_http::http::StatusCode;

use super::{Deps, client_ip, presented_refresh_token, problem_clearing_cookies};
use crate::domain::UserId;
use crate::error::{ApiError, FieldErrors};
use crate::http::{self, Response, TokenDelivery};
use crate::jwt::{TokenError, TokenUse};
use crate::store::Sessions;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The presented session only.
    Session,
    /// Every session of the user.
    Global,
}

endpoint!(logout, [POST], Sessions);

#[tracing::instrument(skip_all)]
async fn logout<S: Sessions>(deps: &Deps<S>, req: &Request) -> Result<Response, ApiError> {
    let body = http::optional_json_body(req)?.unwrap_or_default();
    let mut errors = FieldErrors::new();
    body.reject_unknown(&["refresh_token", "scope"], &mut errors);
    let from_body = body.optional_str("refresh_token", &mut errors);
    let scope = match body.optional_str("scope", &mut errors) {
        None | Some("session") => Scope::Session,
        Some("global") => Scope::Global,
        Some(_) => {
            errors.insert("scope".into(), "must be \"global\" or \"session\"".into());
            Scope::Session
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let presented = presented_refresh_token(deps, req, from_body)?;
    let clear = presented.as_ref().is_some_and(|p| p.from_cookie)
        || TokenDelivery::of(req) == TokenDelivery::Cookie;
    let logged_out = || {
        let mut response = http::no_content();
        if clear {
            http::clear_token_cookies(&mut response, deps.config.cookies.same_site);
        }
        response
    };
    let Some(presented) = presented else {
        // Nothing to revoke: a browser whose cookies a first logout already cleared.
        return Ok(logged_out());
    };

    let now = deps.now();
    let claims = match deps.tokens.verify(&presented.token, TokenUse::Refresh, now) {
        Ok(claims) => claims,
        // An expired session has nothing left to revoke.
        Err(TokenError::Expired) => return Ok(logged_out()),
        Err(TokenError::Invalid) if clear => {
            return Ok(problem_clearing_cookies(deps, &ApiError::InvalidToken));
        }
        Err(TokenError::Invalid) => return Err(ApiError::InvalidToken),
    };
    let user_id = UserId::parse(&claims.sub).ok_or(ApiError::InvalidToken)?;
    match scope {
        Scope::Session => {
            deps.store
                .revoke_session(&claims.sid, user_id, "logout", now, claims.exp)
                .await?;
        }
        Scope::Global => deps.store.revoke_all_sessions(user_id, claims.ver).await?,
    }
    tracing::info!(
        event = "logout",
        scope = if scope == Scope::Global { "global" } else { "session" },
        user_id = %user_id,
        sid = %claims.sid,
        source_ip = %client_ip(req)
    );
    let response = logged_out();
    debug_assert_eq!(response.status(), StatusCode::NO_CONTENT);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::{me, refresh};
    use crate::store::Store;
    use crate::testing::{alice, bearer, body_json, cookie_post, deps, event, get, post, sign_in};
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
        let deps = deps();
        let tokens = alice(&deps).await;
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
        let deps = deps();
        let a = alice(&deps).await;
        let b = sign_in(&deps, "alice").await;
        let global = json!({"refresh_token": a["refresh_token"], "scope": "global"});
        assert_eq!(logout_with(&deps, global.clone()).await, 204);
        for tokens in [&a, &b] {
            assert_eq!(refresh_status(&deps, tokens).await, 401);
            let req = get("/auth/me", &[("authorization", &bearer(tokens))]);
            assert_eq!(me::handle(&deps, req).await.expect("ok").status(), 401);
        }
        assert_eq!(logout_with(&deps, global).await, 204, "twice is still 204");
    }

    #[tokio::test]
    async fn cookie_logout_checks_the_origin_and_clears_cookies() {
        let deps = deps();
        let tokens = alice(&deps).await;
        let refresh_token = tokens["refresh_token"].as_str().unwrap_or_default();
        let cookie = format!("__Secure-refresh_token={refresh_token}");
        let foreign = cookie_post("/auth/logout", &cookie, Some("https://evil.example"));
        let foreign = handle(&deps, foreign).await.expect("ok");
        assert_eq!(body_json(&foreign)["code"], "csrf_rejected");
        let allowed = cookie_post("/auth/logout", &cookie, Some("http://localhost:3000"));
        let response = handle(&deps, allowed).await.expect("ok");
        assert_eq!(response.status(), 204);
        let cleared: Vec<_> = response.headers().get_all("set-cookie").iter().collect();
        assert_eq!(cleared.len(), 2);
        assert!(
            cleared
                .iter()
                .all(|c| c.to_str().is_ok_and(|c| c.contains("Max-Age=0")))
        );
        // The browser's second logout has no cookie left: still 204.
        let again = cookie_post("/auth/logout", "", Some("http://localhost:3000"));
        assert_eq!(handle(&deps, again).await.expect("ok").status(), 204);
    }
}
