//! `POST /auth/refresh`: trade a refresh token for a new token pair, spending it (RT-01..RT-05).
//!
//! The presented token is spent atomically. Presented again within
//! `REFRESH_REUSE_INTERVAL_SECONDS` (two tabs refreshing at once, a lost response), it gets the
//! same successor back; presented later, or once its successor has been spent too, it revokes
//! its whole session and answers 401 `token_reused`.

use std::time::Duration;

use lambda_http::Request;
use lambda_http::http::StatusCode;
use uuid::Uuid;

use crate::domain::UserId;
use crate::error::ApiError;
use crate::handlers::{
    Deps, Reply, SignIn, check_cookie_mode_origin, client_ip, presented_refresh_token,
    problem_clearing_cookies, token_response, token_user, user_agent,
};
use crate::http::{self, Fields, RequestBody, Response, TokenDelivery};
use crate::jwt::{Claims, TokenError, TokenUse};
use crate::store::{SessionRecord, Sessions, Spend, SpendOutcome, Users};

endpoint!(refresh, [POST], Users + Sessions);

/// What a refresh takes: the refresh token, unless it comes as the cookie.
struct Refresh {
    refresh_token: Option<String>,
}

impl RequestBody for Refresh {
    fn read(body: &mut Fields) -> Option<Self> {
        let refresh_token = body.optional_text("refresh_token")?;
        Some(Self { refresh_token })
    }
}

async fn refresh<S: Users + Sessions>(deps: &Deps<S>, req: &Request) -> Reply {
    let Refresh { refresh_token } = http::read_or_empty(req)?;
    let presented = presented_refresh_token(deps, req, refresh_token.as_deref())?
        .ok_or(ApiError::InvalidToken)?;
    // A token that came as a cookie goes back as one: it never moves into a readable body.
    let delivery = if presented.from_cookie {
        TokenDelivery::Cookie
    } else {
        TokenDelivery::of(req)?
    };
    check_cookie_mode_origin(deps, req, delivery)?;
    match spend(deps, req, &presented.token, delivery).await {
        Err(err) if presented.from_cookie && err.status() == StatusCode::UNAUTHORIZED => {
            Ok(problem_clearing_cookies(deps, &err))
        }
        outcome => outcome,
    }
}

async fn spend<S: Users + Sessions>(
    deps: &Deps<S>,
    req: &Request,
    token: &str,
    delivery: TokenDelivery,
) -> Result<Response, ApiError> {
    let now = deps.now();
    let now_ms = deps.now_ms();
    let claims = match deps.tokens().verify(token, TokenUse::Refresh, now) {
        Ok(claims) => claims,
        // Only a genuine token can be expired: its session has reached its absolute lifetime.
        Err(TokenError::Expired) => return Err(ApiError::SessionExpired),
        Err(TokenError::Invalid) => return Err(ApiError::InvalidToken),
    };
    // Every refresh issues a new token, so its `iat` is the session's last use.
    let idle_limit = deps.config.sessions.idle_timeout.as_secs();
    if now.saturating_sub(claims.iat) > idle_limit {
        tracing::info!(event = "session_idle_expired", sid = %claims.sid);
        return Err(ApiError::SessionExpired);
    }
    let user = token_user(deps, &claims).await?;
    let user_id = user.id;

    let spend = Spend {
        spent_jti: claims.jti.clone(),
        sid: claims.sid.clone(),
        user_id,
        successor_jti: Uuid::new_v4().to_string(),
        successor_iat: now,
        spent_at_ms: now_ms,
        expires_at: claims.verifiable_until(),
    };
    // The spend's write also moves the session record's last use (and gives a session begun
    // before records existed its record).
    let session = SessionRecord {
        user_id,
        sid: claims.sid.clone(),
        created_at: claims.auth_time.unwrap_or(claims.iat),
        last_used_at: now,
        expires_at: claims.exp,
        token_version: claims.ver,
        user_agent: user_agent(req),
        client: http::source_ip(req).map(|ip| deps.client_part(&ip)),
    };
    let successor = match deps.store.spend_refresh_token(&spend, &session).await? {
        SpendOutcome::Spent => spend,
        SpendOutcome::SessionRevoked => return Err(ApiError::InvalidToken),
        SpendOutcome::AlreadySpent {
            winner,
            session_revoked,
        } => {
            if session_revoked || !is_graceful_reuse(deps, &claims, &winner, now_ms).await? {
                return Err(reused(deps, req, &claims, user_id, session_revoked).await);
            }
            winner
        }
    };
    let refresh =
        deps.tokens()
            .successor_claims(&claims, &successor.successor_jti, successor.successor_iat);
    let access = SignIn::of(&claims).mark(deps.tokens().access_claims(&user, &claims.sid, now));
    token_response(deps, &user, access, refresh, delivery, StatusCode::OK)
}

/// A spent token came back outside the grace of RT-04: its session is revoked (unless it is
/// already), and the answer is 401 `token_reused`.
async fn reused<S: Sessions>(
    deps: &Deps<S>,
    req: &Request,
    claims: &Claims,
    user_id: UserId,
    session_revoked: bool,
) -> ApiError {
    if !session_revoked {
        let until = claims.verifiable_until();
        let revoked = (deps.store)
            .revoke_session(&claims.sid, user_id, "token_reused", deps.now(), until)
            .await;
        if let Err(err) = revoked {
            return err.into();
        }
    }
    tracing::warn!(
        event = "token_reused",
        user_id = %user_id,
        sid = %claims.sid,
        source_ip = %client_ip(req),
        "a spent refresh token came back; its session is revoked"
    );
    ApiError::TokenReused
}

/// A spent token may come back within the reuse interval, and only while its successor is
/// still unspent (only the immediate predecessor of the live token qualifies, RT-04).
async fn is_graceful_reuse<S: Users + Sessions>(
    deps: &Deps<S>,
    claims: &Claims,
    winner: &Spend,
    now_ms: u64,
) -> Result<bool, ApiError> {
    let interval = deps.config.sessions.reuse_interval;
    let elapsed = Duration::from_millis(now_ms.saturating_sub(winner.spent_at_ms));
    let within = !interval.is_zero() && winner.sid == claims.sid && elapsed < interval;
    Ok(within && !deps.store.is_spent(&winner.successor_jti).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::store::Store;
    use crate::testing::ManualClock;
    use crate::testing::MemoryStore;
    use crate::testing::access_keys;
    use crate::testing::{
        alice, body_json, config_with, cookie_post, deps, event, post, sign_in, with_alice,
    };
    use serde_json::{Value, json};
    use std::sync::Arc;
    use time::Duration;

    async fn refresh_with(deps: &Deps<impl Store>, token: &Value) -> Response {
        handle(
            deps,
            post("/auth/refresh", &json!({"refresh_token": token})),
        )
        .await
        .expect("infallible")
    }

    #[tokio::test]
    async fn the_sample_event_is_a_refresh_request() {
        let response = handle(&deps(), event("refresh")).await.expect("infallible");
        assert_eq!(
            response.status(),
            401,
            "its placeholder token is not a token"
        );
        assert_eq!(body_json(&response)["code"], "invalid_token");
    }

    #[tokio::test]
    async fn spend_grace_and_reuse_detection() {
        let (clock, deps) = crate::testing::clocked();
        let first = alice(&deps).await;
        let r1 = &first["refresh_token"];

        let second = body_json(&refresh_with(&deps, r1).await);
        let r2 = &second["refresh_token"];
        assert!(r2.is_string() && r2 != r1, "RT-01: a new refresh token");
        assert_eq!(second["user"]["username"], "alice");

        // Inside the interval: the same successor, nothing new minted.
        clock.advance(Duration::seconds(5));
        let again = body_json(&refresh_with(&deps, r1).await);
        assert_eq!(&again["refresh_token"], r2);

        // From the interval on (10 s here, to the millisecond): the whole session dies, the
        // newest token included.
        clock.advance(Duration::seconds(5));
        let reused = refresh_with(&deps, r1).await;
        assert_eq!(reused.status(), 401);
        assert_eq!(body_json(&reused)["code"], "token_reused");
        assert_eq!(refresh_with(&deps, r2).await.status(), 401);
        assert_eq!(
            deps.store.revocation(
                crate::testing::token_claims(r2.as_str().unwrap_or_default())["sid"]
                    .as_str()
                    .unwrap_or_default()
            ),
            Some("token_reused")
        );
    }

    #[tokio::test]
    async fn the_reuse_interval_is_measured_to_the_millisecond() {
        // Two tabs, one of them 1.2 s late, with a 2 s interval. In whole seconds a token spent
        // at 0.9 s and presented at 2.1 s looked 2 s old: the late tab was told `token_reused`
        // and its live session revoked (seen once under load while instances were starting).
        let clock = Arc::new(ManualClock::new());
        let into_second = clock.now().millisecond();
        clock.advance(Duration::milliseconds(i64::from(
            (1900 - into_second) % 1000,
        )));
        let config = config_with(&[("REFRESH_REUSE_INTERVAL_SECONDS", "2")]);
        let deps = Deps::new(config, MemoryStore::new(), access_keys()).with_clock(clock.clone());
        let first = alice(&deps).await;
        let r1 = &first["refresh_token"];
        let winner = body_json(&refresh_with(&deps, r1).await);

        clock.advance(Duration::milliseconds(1200));
        let late = refresh_with(&deps, r1).await;
        assert_eq!(late.status(), 200, "{}", body_json(&late));
        assert_eq!(body_json(&late)["refresh_token"], winner["refresh_token"]);

        // And the grace never outlasts the interval: at 2.1 s after the spend it is over.
        clock.advance(Duration::milliseconds(900));
        assert_eq!(
            body_json(&refresh_with(&deps, r1).await)["code"],
            "token_reused"
        );
    }

    #[tokio::test]
    async fn only_the_immediate_predecessor_gets_grace() {
        // RT-04: R1 -> R2 -> R3, then R1 again within the interval: reuse.
        let (deps, first) = with_alice().await;
        let r2 =
            body_json(&refresh_with(&deps, &first["refresh_token"]).await)["refresh_token"].clone();
        let r3 = body_json(&refresh_with(&deps, &r2).await)["refresh_token"].clone();
        let grandparent = refresh_with(&deps, &first["refresh_token"]).await;
        assert_eq!(body_json(&grandparent)["code"], "token_reused");
        assert_eq!(refresh_with(&deps, &r3).await.status(), 401);
    }

    #[tokio::test]
    async fn access_tokens_forged_and_missing_tokens_are_refused() {
        let (deps, first) = with_alice().await;
        for token in [&first["access_token"], &json!("a.b.c"), &json!("")] {
            let response = refresh_with(&deps, token).await;
            assert_eq!(response.status(), 401, "{token}");
            assert_eq!(body_json(&response)["code"], "invalid_token");
        }
        let none = handle(&deps, post("/auth/refresh", &json!({})))
            .await
            .expect("infallible");
        assert_eq!(none.status(), 401);
        let typed = handle(&deps, post("/auth/refresh", &json!({"refresh_token": 5})))
            .await
            .expect("ok");
        assert_eq!(typed.status(), 422);
    }

    #[tokio::test]
    async fn idle_and_absolute_expiry() {
        let (clock, deps) = crate::testing::clocked();
        let first = alice(&deps).await;
        // Idle: a day without use by default.
        clock.advance(Duration::seconds(86_400 + 1));
        let idle = refresh_with(&deps, &first["refresh_token"]).await;
        assert_eq!(body_json(&idle)["code"], "session_expired");

        // Absolute: a week, however often the session is used.
        let fresh = sign_in(&deps, "alice").await;
        let mut token = fresh["refresh_token"].clone();
        for _ in 0..7 {
            clock.advance(Duration::seconds(86_000));
            let next = refresh_with(&deps, &token).await;
            assert_eq!(next.status(), 200);
            token = body_json(&next)["refresh_token"].clone();
        }
        clock.advance(Duration::seconds(86_000));
        let expired = refresh_with(&deps, &token).await;
        assert_eq!(body_json(&expired)["code"], "session_expired");
    }

    #[tokio::test]
    async fn cookie_refresh_needs_an_allowed_origin_and_answers_with_cookies() {
        let (deps, first) = with_alice().await;
        let refresh_token = first["refresh_token"].as_str().unwrap_or_default();
        let cookie = format!("__Secure-refresh_token={refresh_token}");
        let no_origin = cookie_post("/auth/refresh", &cookie, None);
        let no_origin = handle(&deps, no_origin).await.expect("ok");
        assert_eq!(body_json(&no_origin)["code"], "csrf_rejected");

        let req = cookie_post("/auth/refresh", &cookie, Some("http://localhost:3000"));
        let response = handle(&deps, req.clone()).await.expect("ok");
        assert_eq!(response.status(), 200);
        let body = body_json(&response);
        assert!(
            body.get("refresh_token").is_none(),
            "a cookie token never moves into the body"
        );
        assert_eq!(response.headers().get_all("set-cookie").iter().count(), 2);

        // Strict reuse later: the dead session's cookies are cleared.
        let strict = config_with(&[("REFRESH_REUSE_INTERVAL_SECONDS", "0")]);
        let deps = Deps {
            config: strict,
            ..deps
        };
        let reused = handle(&deps, req).await.expect("ok");
        assert_eq!(body_json(&reused)["code"], "token_reused");
        crate::testing::assert_cookies_cleared(&reused);
    }
}
