//! `POST /auth/register`: create an account and sign it in (201 token response).

use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde_json::json;
use time::OffsetDateTime;

use crate::domain::{Email, FullName, NewPassword, User, UserRecord, Username};
use crate::error::ApiError;
use crate::handlers::codes::{CodeKind, verification_mail};
use crate::handlers::{
    Deps, Reply, SignIn, begin_session, check_cookie_mode_origin, client_ip, session_tokens,
};
use crate::http::{self, Fields, RequestBody, TokenDelivery};
use crate::store::{Limits, Users};

endpoint!(register, [POST], Users + Limits);

/// What a registration takes.
struct Registration {
    username: Username,
    email: Email,
    password: NewPassword,
    full_name: Option<FullName>,
}

impl RequestBody for Registration {
    fn read(body: &mut Fields) -> Option<Self> {
        let username = body.required("username", Username::parse);
        let email = body.required("email", Email::parse);
        let full_name = body.optional("full_name", FullName::parse);
        let identifiers = [
            username.as_ref().map_or("", Username::as_str),
            email.as_ref().map_or("", Email::as_str),
        ];
        let password = body.required("password", |p| NewPassword::parse(p, &identifiers));
        Some(Self {
            username: username?,
            email: email?,
            password: password?,
            full_name: full_name?,
        })
    }
}

async fn register<S: Users + Limits>(deps: &Deps<S>, req: &Request) -> Reply {
    let delivery = TokenDelivery::of(req)?;
    check_cookie_mode_origin(deps, req, delivery)?;
    let Registration {
        username,
        email,
        password,
        full_name,
    } = http::read(req)?;

    let now =
        OffsetDateTime::from_unix_timestamp(deps.clock.unix()).map_err(|_| ApiError::Internal)?;
    // A 409 tells whether an address or a username is taken: each client address gets a
    // bounded number of them, taken before the Argon2 hash (so a probe costs no hashing once
    // the budget is spent) and given back when the account is created.
    let source_ip = client_ip(req);
    let probe = deps.take_probe("register-conflict", &source_ip).await?;
    let password_hash = deps.passwords.hash(password.expose()).await?;
    let mut user = UserRecord::new(username, email, full_name, password_hash, now);
    // The verification code is written with the account, in the same transaction.
    let (code, stored) = CodeKind::EmailVerification.issue(deps, user.id, &user.email);
    user.verify_code = Some(stored);
    // No session before the address is verified when that is required (sign in afterwards);
    // otherwise the first session's record is written with the account, too.
    let signs_in = !deps.config.sessions.require_verified_email;
    let session = signs_in.then(|| begin_session(deps, req, &user));
    deps.store.create_user(&user, session.as_ref()).await?;
    deps.refund_probe(&probe).await;
    tracing::info!(event = "user_registered", user_id = %user.id, source_ip = %source_ip);
    let mail = verification_mail(deps, &user.email, &code);
    deps.send_quietly(&mail, "verification_requested").await;
    match session {
        Some(session) => session_tokens(
            deps,
            &user,
            &session,
            SignIn::Password,
            delivery,
            StatusCode::CREATED,
        ),
        None => {
            let body = json!({"user": User::from(&user), "verification_required": true});
            Ok(http::json(StatusCode::CREATED, &body))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Response;
    use crate::testing::{body_json, deps, event, from_ip, post};
    use serde_json::json;

    #[tokio::test]
    async fn conflicts_are_limited_per_client_address_before_any_hashing() {
        // AB-03: at most 20 answers of 409 per client address per 5 minutes, then 429, and
        // the 429 costs no Argon2 hash.
        let deps = deps();
        let body = |name: &str| json!({"username": name, "email": "alice@example.com", "password": "a long passphrase here"});
        assert_eq!(
            handle(&deps, post("/auth/register", &body("alice")))
                .await
                .expect("ok")
                .status(),
            201
        );
        for i in 0..20 {
            let taken = handle(&deps, post("/auth/register", &body(&format!("bob{i}"))));
            assert_eq!(taken.await.expect("ok").status(), 409);
        }
        let hashes = deps.passwords.hash_count();
        let limited = handle(&deps, post("/auth/register", &body("carol")))
            .await
            .expect("ok");
        assert_eq!(limited.status(), 429);
        assert_eq!(body_json(&limited)["code"], "too_many_attempts");
        assert_eq!(deps.passwords.hash_count(), hashes, "no hash once limited");
        // Successes give their unit back: they reveal nothing.
        let elsewhere = |name: &str, email: &str| {
            let body =
                json!({"username": name, "email": email, "password": "a long passphrase here"});
            handle(&deps, from_ip(post("/auth/register", &body), "203.0.113.9"))
        };
        for i in 0..25 {
            let created = elsewhere(&format!("dave{i}"), &format!("dave{i}@example.com"));
            assert_eq!(created.await.expect("ok").status(), 201);
        }
    }

    #[tokio::test]
    async fn registers_and_signs_in_from_the_sample_event() {
        let deps = deps();
        let response = handle(&deps, event("register")).await.expect("infallible");
        assert_eq!(response.status(), 201);
        let body = body_json(&response);
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 600);
        assert_eq!(body["refresh_expires_in"], 604_800);
        assert_eq!(body["user"]["username"], "alice");
        assert_eq!(body["user"]["email"], "alice@example.com");
        assert!(body["user"].get("password_hash").is_none());
        assert!(
            body["access_token"]
                .as_str()
                .is_some_and(|t| t.split('.').count() == 3)
        );
        assert!(
            response.headers().get("set-cookie").is_none(),
            "body mode sets no cookie"
        );
        assert_eq!(deps.store.user_count(), 1);
    }

    #[tokio::test]
    async fn taken_email_or_username_is_a_conflict_case_insensitively() {
        let deps = deps();
        let first =
            json!({"username": "bob", "email": "bob@example.com", "password": "a long passphrase"});
        assert_eq!(
            handle(&deps, post("/auth/register", &first))
                .await
                .expect("ok")
                .status(),
            201
        );
        let same_email = json!({"username": "bobby", "email": "BOB@Example.com", "password": "a long passphrase"});
        let response = handle(&deps, post("/auth/register", &same_email))
            .await
            .expect("ok");
        assert_eq!(response.status(), 409);
        assert_eq!(body_json(&response)["code"], "email_taken");
        let same_name = json!({"username": "BOB", "email": "other@example.com", "password": "a long passphrase"});
        let response = handle(&deps, post("/auth/register", &same_name))
            .await
            .expect("ok");
        assert_eq!(body_json(&response)["code"], "username_taken");
        assert_eq!(deps.store.user_count(), 1);
    }

    #[tokio::test]
    async fn validation_reports_every_field() {
        let deps = deps();
        let bad = json!({"username": "a@b", "email": "nope", "password": "password1", "full_name": 7, "role": "admin"});
        let response = handle(&deps, post("/auth/register", &bad))
            .await
            .expect("ok");
        assert_eq!(response.status(), 422);
        let body = body_json(&response);
        assert_eq!(body["code"], "validation_failed");
        for field in ["username", "email", "password", "full_name", "role"] {
            assert!(body["errors"][field].is_string(), "{field}: {body}");
        }
        assert_eq!(deps.store.user_count(), 0, "no partial write");
        let missing = handle(&deps, post("/auth/register", &json!({})))
            .await
            .expect("ok");
        assert_eq!(body_json(&missing)["errors"]["password"], "is required");
    }

    /// A registration of `name` that asks for its tokens as cookies, from `origin` if given.
    async fn cookie_mode_registration(
        deps: &Deps<impl crate::store::Store>,
        name: &str,
        origin: Option<&str>,
    ) -> Response {
        let email = format!("{name}@example.com");
        let body = json!({"username": name, "email": email, "password": "a long passphrase"});
        let mut headers = vec![("x-token-delivery", "cookie")];
        headers.extend(origin.map(|origin| ("origin", origin)));
        let req = crate::testing::request("POST", "/auth/register", &headers, Some(&body));
        handle(deps, req).await.expect("ok")
    }

    #[tokio::test]
    async fn cookie_mode_sets_cookies_and_keeps_tokens_out_of_the_body() {
        // CK-01, CK-04, CK-05
        let deps = deps();
        let response = cookie_mode_registration(&deps, "carol", None).await;
        assert_eq!(response.status(), 201);
        let body = body_json(&response);
        assert!(body.get("access_token").is_none() && body.get("refresh_token").is_none());
        assert_eq!(body["expires_in"], 600);
        let cookies: Vec<String> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(cookies.len(), 2);
        assert!(cookies[0].starts_with("__Host-access_token=") && cookies[0].contains("Path=/;"));
        assert!(
            cookies[1].starts_with("__Secure-refresh_token=") && cookies[1].contains("Path=/auth;")
        );
        for c in &cookies {
            assert!(
                c.contains("HttpOnly") && c.contains("Secure") && c.contains("SameSite=Strict")
            );
        }
        assert!(cookies[1].contains("Max-Age=604800"));
    }

    #[tokio::test]
    async fn cookie_mode_from_a_foreign_origin_is_refused() {
        let deps = deps();
        let response = cookie_mode_registration(&deps, "dave", Some("https://evil.example")).await;
        assert_eq!(response.status(), 403);
        assert_eq!(body_json(&response)["code"], "csrf_rejected");
        assert_eq!(deps.store.user_count(), 0);
    }

    #[tokio::test]
    async fn wrong_method_is_405() {
        let deps = deps();
        let mut req = post("/auth/register", &json!({}));
        *req.method_mut() = lambda_http::http::Method::GET;
        assert_eq!(handle(&deps, req).await.expect("ok").status(), 405);
    }
}
