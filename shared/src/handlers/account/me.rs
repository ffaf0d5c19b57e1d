//! `GET /auth/me`: the signed-in user (one read).

use lambda_http::Request;
use lambda_http::http::StatusCode;

use crate::domain::User;
use crate::handlers::{Deps, Reply, authenticate};
use crate::http::{self};
use crate::store::Users;

endpoint!(me, [GET, HEAD], Users);

async fn me<S: Users>(deps: &Deps<S>, req: &Request) -> Reply {
    let caller = authenticate(deps, req).await?;
    Ok(http::json(StatusCode::OK, &User::from(&caller.user)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Sessions;
    use crate::testing::{bearer, body_json, event, get, with_alice};
    use lambda_http::http::HeaderValue;

    #[tokio::test]
    async fn returns_the_user_for_a_bearer_token() {
        let (deps, tokens) = with_alice().await;
        let mut req = event("me");
        let bearer = bearer(&tokens);
        req.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&bearer).expect("header"),
        );
        let response = handle(&deps, req).await.expect("ok");
        assert_eq!(response.status(), 200);
        let body = body_json(&response);
        assert_eq!(body["username"], "alice");
        assert_eq!(body["full_name"], serde_json::Value::Null);
        assert!(body.get("password_hash").is_none());
    }

    /// One token of a token response.
    fn token<'t>(tokens: &'t serde_json::Value, kind: &str) -> &'t str {
        tokens[kind].as_str().unwrap_or_default()
    }

    /// The status of `GET /auth/me` with one header.
    async fn status_with(deps: &Deps<impl crate::store::Store>, name: &str, value: &str) -> u16 {
        let response = handle(deps, get("/auth/me", &[(name, value)])).await;
        response.expect("infallible").status().as_u16()
    }

    #[tokio::test]
    async fn accepts_the_access_cookie() {
        let (deps, tokens) = with_alice().await;
        let cookie = format!("__Host-access_token={}", token(&tokens, "access_token"));
        assert_eq!(status_with(&deps, "cookie", &cookie).await, 200);
    }

    #[tokio::test]
    async fn missing_forged_and_refresh_tokens_are_401_with_a_challenge() {
        // JWT-08: a refresh token is not an access token.
        let (deps, tokens) = with_alice().await;
        let refresh = format!("Bearer {}", token(&tokens, "refresh_token"));
        let access = tokens["access_token"].as_str().unwrap_or_default();
        let forged = format!("Bearer {}x", &access[..access.len() - 1]);
        for headers in [
            vec![],
            vec![("authorization", refresh.as_str())],
            vec![("authorization", forged.as_str())],
            vec![("authorization", "Bearer not-a-jwt")],
            vec![("authorization", "Basic YTpi")],
        ] {
            let response = handle(&deps, get("/auth/me", &headers)).await.expect("ok");
            assert_eq!(response.status(), 401, "{headers:?}");
            assert!(response.headers().contains_key("www-authenticate"));
            assert_eq!(body_json(&response)["code"], "invalid_token");
        }
    }

    #[tokio::test]
    async fn tokens_older_than_the_revocation_point_are_refused() {
        let (deps, tokens) = with_alice().await;
        let id = crate::domain::UserId::parse(tokens["user"]["id"].as_str().unwrap_or_default())
            .expect("id");
        deps.store
            .revoke_all_sessions(id, 0)
            .await
            .expect("revoked");
        assert_eq!(
            status_with(&deps, "authorization", &bearer(&tokens)).await,
            401
        );
    }

    #[tokio::test]
    async fn a_token_above_the_revocation_point_is_refused_too() {
        // Issue 27: a `ver` the user never reached was never issued; only a forged token (say,
        // one signed with a leaked key) could carry it.
        let (deps, tokens) = with_alice().await;
        let user = crate::testing::user_id(&tokens);
        let record = deps
            .store
            .get_user(user)
            .await
            .ok()
            .flatten()
            .expect("alice");
        let mut claims = deps.tokens().access_claims(&record, "sid", deps.now());
        claims.ver = record.token_version + 1;
        let ahead = deps.tokens().sign(claims).expect("signed").token;
        let bearer = format!("Bearer {ahead}");
        assert_eq!(status_with(&deps, "authorization", &bearer).await, 401);
    }
}
