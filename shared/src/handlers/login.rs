//! `POST /auth/login`: sign in with an email or a username (200 token response).
//!
//! Unknown identifier, wrong password: one answer, one Argon2 verification (LG-01, LG-02).

use std::convert::Infallible;

use lambda_http::Request;
use lambda_http::http::{Method, StatusCode};

use super::{Deps, answer, check_cookie_mode_origin, client_ip, new_session, require_method};
use crate::domain::{Identifier, PasswordAttempt};
use crate::error::{ApiError, FieldErrors};
use crate::http::{self, Response, TokenDelivery, check};
use crate::store::UserStore;

pub async fn handle<S: UserStore>(deps: &Deps<S>, req: Request) -> Result<Response, Infallible> {
    answer(login(deps, &req).await)
}

#[tracing::instrument(skip_all)]
async fn login<S: UserStore>(deps: &Deps<S>, req: &Request) -> Result<Response, ApiError> {
    require_method(req, &[Method::POST])?;
    let delivery = TokenDelivery::of(req);
    check_cookie_mode_origin(deps, req, delivery)?;
    let body = http::json_body(req)?;

    let mut errors = FieldErrors::new();
    body.reject_unknown(
        &["identifier", "email", "username", "password"],
        &mut errors,
    );
    let given: Vec<&str> = ["identifier", "email", "username"]
        .into_iter()
        .filter(|key| body.has(key))
        .collect();
    let identifier = match given.as_slice() {
        [key] => body.required_str(key, &mut errors),
        [] => body.required_str("identifier", &mut errors),
        _ => {
            errors.insert(
                "identifier".into(),
                "give one of identifier, email or username".into(),
            );
            None
        }
    };
    let password = check(
        "password",
        body.required_str("password", &mut errors),
        PasswordAttempt::parse,
        &mut errors,
    );
    let (Some(identifier), Some(password), true) = (identifier, password, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };

    // An identifier that cannot name an account takes the unknown-user path: same work, same answer.
    let user = match Identifier::parse(identifier) {
        Ok(identifier) => match deps.store.find_user_id(&identifier).await? {
            Some(id) => deps.store.get_user(id).await?,
            None => None,
        },
        Err(_) => None,
    };
    let verified = deps
        .passwords
        .verify(
            password.expose(),
            user.as_ref().map(|u| u.password_hash.as_str()),
        )
        .await;
    match user {
        Some(user) if verified => {
            tracing::info!(event = "login_succeeded", user_id = %user.id, source_ip = %client_ip(req));
            new_session(deps, &user, delivery, StatusCode::OK)
        }
        user => {
            tracing::warn!(
                event = "login_failed",
                user_id = user.map(|u| u.id.to_string()).unwrap_or_default(),
                source_ip = %client_ip(req)
            );
            Err(ApiError::InvalidCredentials)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::testing::{alice, body_json, deps, event, post, register};
    use serde_json::json;

    #[tokio::test]
    async fn signs_in_with_the_sample_event() {
        let deps = deps();
        alice(&deps).await;
        let response = handle(&deps, event("login")).await.expect("ok");
        assert_eq!(response.status(), 200);
        let body = body_json(&response);
        assert_eq!(body["user"]["username"], "alice");
        assert!(body["refresh_token"].is_string());
    }

    #[tokio::test]
    async fn email_username_and_their_aliases_all_work_in_any_case() {
        let deps = deps();
        register(
            &deps,
            "Alice",
            "alice@example.com",
            "correct horse battery staple",
        )
        .await;
        for (key, value) in [
            ("identifier", "ALICE@example.com"),
            ("identifier", "alice"),
            ("email", "Alice@Example.com"),
            ("username", "ALICE"),
        ] {
            let req = post(
                "/auth/login",
                &json!({key: value, "password": "correct horse battery staple"}),
            );
            assert_eq!(
                handle(&deps, req).await.expect("ok").status(),
                200,
                "{key}={value}"
            );
        }
    }

    #[tokio::test]
    async fn unknown_user_and_wrong_password_look_the_same() {
        // LG-01: same status, body and headers; LG-02: one verification each.
        let deps = deps();
        alice(&deps).await;
        let before = deps.passwords.verification_count();
        let wrong = handle(
            &deps,
            post(
                "/auth/login",
                &json!({"identifier": "alice", "password": "wrong password"}),
            ),
        )
        .await
        .expect("ok");
        let unknown = handle(
            &deps,
            post(
                "/auth/login",
                &json!({"identifier": "nobody", "password": "wrong password"}),
            ),
        )
        .await
        .expect("ok");
        let malformed = handle(
            &deps,
            post(
                "/auth/login",
                &json!({"identifier": "x", "password": "wrong password"}),
            ),
        )
        .await
        .expect("ok");
        assert_eq!(deps.passwords.verification_count() - before, 3);
        for response in [&wrong, &unknown, &malformed] {
            assert_eq!(response.status(), 401);
            assert_eq!(response.headers(), wrong.headers());
            assert_eq!(response.body().as_ref(), wrong.body().as_ref());
        }
        assert_eq!(body_json(&wrong)["code"], "invalid_credentials");
    }

    #[tokio::test]
    async fn bad_bodies_are_4xx() {
        let deps = deps();
        let two = post(
            "/auth/login",
            &json!({"email": "a@b.co", "username": "abc", "password": "x"}),
        );
        assert_eq!(handle(&deps, two).await.expect("ok").status(), 422);
        let typed = post("/auth/login", &json!({"identifier": 5, "password": ["x"]}));
        let response = handle(&deps, typed).await.expect("ok");
        assert_eq!(response.status(), 422);
        let body = body_json(&response);
        assert_eq!(body["errors"]["identifier"], "must be a string");
        assert_eq!(body["errors"]["password"], "must be a string");
        let long = post(
            "/auth/login",
            &json!({"identifier": "alice", "password": "x".repeat(129)}),
        );
        assert_eq!(handle(&deps, long).await.expect("ok").status(), 422);
        assert_eq!(
            deps.passwords.verification_count(),
            0,
            "no hashing for malformed requests"
        );
    }
}
