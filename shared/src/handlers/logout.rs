//! `POST /auth/logout`: end the presented session, or with `"scope": "global"` every session of
//! the user and every access token issued before (RT-06). Answers 204 and clears the cookies;
//! only a forged or malformed token is refused (401), so logging out twice is 204.

use std::convert::Infallible;

use lambda_http::Request;
use lambda_http::http::{Method, StatusCode};

use super::{
    Deps, answer, client_ip, presented_refresh_token, problem_clearing_cookies, require_method,
};
use crate::domain::UserId;
use crate::error::{ApiError, FieldErrors};
use crate::http::{self, Response, TokenDelivery};
use crate::jwt::{TokenError, TokenUse};
use crate::store::UserStore;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The presented session only.
    Session,
    /// Every session of the user.
    Global,
}

pub async fn handle<S: UserStore>(deps: &Deps<S>, req: Request) -> Result<Response, Infallible> {
    answer(logout(deps, &req).await)
}

#[tracing::instrument(skip_all)]
async fn logout<S: UserStore>(deps: &Deps<S>, req: &Request) -> Result<Response, ApiError> {
    require_method(req, &[Method::POST])?;
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
            http::clear_token_cookies(&mut response, deps.config.cookie_same_site);
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
    use crate::handlers::testing::{body_json, deps, event, get, post, register};
    use crate::handlers::{me, refresh};
    use serde_json::{Value, json};

    async fn logout_with(deps: &Deps<impl UserStore>, body: Value) -> Response {
        handle(deps, post("/auth/logout", &body))
            .await
            .expect("infallible")
    }

    #[tokio::test]
    async fn the_sample_event_is_a_logout_request() {
        let response = handle(&deps(), event("logout")).await.expect("infallible");
        assert_eq!(
            body_json(&response)["code"],
            "invalid_token",
            "its placeholder is not a token"
        );
    }

    #[tokio::test]
    async fn logout_revokes_the_session_and_is_idempotent() {
        let deps = deps();
        let tokens = register(
            &deps,
            "alice",
            "alice@example.com",
            "correct horse battery staple",
        )
        .await;
        let refresh_token = &tokens["refresh_token"];
        assert_eq!(
            logout_with(&deps, json!({"refresh_token": refresh_token}))
                .await
                .status(),
            204
        );
        assert_eq!(
            logout_with(&deps, json!({"refresh_token": refresh_token}))
                .await
                .status(),
            204
        );
        let refused = refresh::handle(
            &deps,
            post("/auth/refresh", &json!({"refresh_token": refresh_token})),
        );
        assert_eq!(refused.await.expect("ok").status(), 401);
        let forged = logout_with(&deps, json!({"refresh_token": "eyJ.eyJ.sig"})).await;
        assert_eq!(forged.status(), 401);
        let bad_scope = logout_with(
            &deps,
            json!({"refresh_token": refresh_token, "scope": "all"}),
        )
        .await;
        assert_eq!(bad_scope.status(), 422);
    }

    #[tokio::test]
    async fn global_logout_refuses_every_session_and_older_access_tokens() {
        let deps = deps();
        let a = register(
            &deps,
            "alice",
            "alice@example.com",
            "correct horse battery staple",
        )
        .await;
        let b = body_json(
            &crate::handlers::login::handle(
                &deps,
                post(
                    "/auth/login",
                    &json!({"identifier": "alice", "password": "correct horse battery staple"}),
                ),
            )
            .await
            .expect("ok"),
        );
        let global = json!({"refresh_token": a["refresh_token"], "scope": "global"});
        assert_eq!(logout_with(&deps, global.clone()).await.status(), 204);
        for tokens in [&a, &b] {
            let refresh = refresh::handle(
                &deps,
                post(
                    "/auth/refresh",
                    &json!({"refresh_token": tokens["refresh_token"]}),
                ),
            );
            assert_eq!(refresh.await.expect("ok").status(), 401);
            let bearer = format!(
                "Bearer {}",
                tokens["access_token"].as_str().unwrap_or_default()
            );
            let me = me::handle(&deps, get("/auth/me", &[("authorization", &bearer)]))
                .await
                .expect("ok");
            assert_eq!(me.status(), 401);
        }
        assert_eq!(
            logout_with(&deps, global).await.status(),
            204,
            "twice is still 204"
        );
    }

    #[tokio::test]
    async fn cookie_logout_checks_the_origin_and_clears_cookies() {
        let deps = deps();
        let tokens = register(
            &deps,
            "alice",
            "alice@example.com",
            "correct horse battery staple",
        )
        .await;
        let cookie = format!(
            "__Secure-refresh_token={}",
            tokens["refresh_token"].as_str().unwrap_or_default()
        );
        let request = |origin: &str| {
            let mut req = post("/auth/logout", &json!({}));
            *req.body_mut() = lambda_http::Body::Empty;
            req.headers_mut().remove("content-type");
            req.headers_mut()
                .insert("cookie", cookie.parse().expect("header"));
            req.headers_mut()
                .insert("origin", origin.parse().expect("header"));
            req
        };
        let foreign = handle(&deps, request("https://evil.example"))
            .await
            .expect("ok");
        assert_eq!(body_json(&foreign)["code"], "csrf_rejected");
        let response = handle(&deps, request("http://localhost:3000"))
            .await
            .expect("ok");
        assert_eq!(response.status(), 204);
        let cleared: Vec<_> = response.headers().get_all("set-cookie").iter().collect();
        assert_eq!(cleared.len(), 2);
        assert!(
            cleared
                .iter()
                .all(|c| c.to_str().unwrap_or_default().contains("Max-Age=0"))
        );
        // The browser's second logout has no cookie left: still 204.
        let mut again = request("http://localhost:3000");
        again.headers_mut().remove("cookie");
        assert_eq!(handle(&deps, again).await.expect("ok").status(), 204);
    }
}
