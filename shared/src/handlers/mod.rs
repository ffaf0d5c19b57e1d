//! The endpoints. Each handler is generic over the store, so the same code runs against
//! DynamoDB in Lambda and against the in-memory fake in tests. A handler never fails: client
//! errors and outages alike become problem responses here.

use std::convert::Infallible;

use lambda_http::Request;

use crate::error::ApiError;
use crate::http::{self, Response};

/// Declares an endpoint's `handle`: it first reads the access-token keys again if the copy in
/// use is stale ([`crate::key_ring`]; so every store also offers `Published`), refuses any other
/// method than the route's (API Gateway
/// routes by method, but a function invoked directly or through a catch-all route must not act
/// on another verb), then runs `$inner` in a span of its name, and turns its outcome into the
/// response. A handler never fails: client errors and outages alike become problem responses.
///
/// `endpoint!(login, [POST], Users + Limits);` is the whole entry point of `login`.
macro_rules! endpoint {
    ($inner:ident, [$($method:ident),+], $($bound:tt)+) => {
        pub async fn handle<S: $($bound)+ + $crate::store::Published>(
            deps: &$crate::handlers::Deps<S>,
            req: ::lambda_http::Request,
        ) -> Result<$crate::http::Response, ::std::convert::Infallible> {
            use ::tracing::Instrument as _;
            deps.keep_keys_fresh().await;
            let methods = [$(::lambda_http::http::Method::$method),+];
            $crate::handlers::answer(match $crate::handlers::require_method(&req, &methods) {
                Ok(()) => {
                    let span = ::tracing::info_span!(stringify!($inner));
                    $inner(deps, &req).instrument(span).await
                }
                Err(err) => Err(err),
            })
        }
    };
}

// Features as folders, each with its endpoints and what they share, tests beside the code.
// Passkeys and social sign-in will be folders of their own beside these.
pub mod account;
pub mod codes;
mod deps;
pub mod keys;
pub mod mfa;
pub mod registry;
pub mod sessions;
pub mod sign_in;

pub use account::{change_password, delete_me, me, register, update_me};
pub use codes::{forgot_password, resend_verification, reset_password, verify_email};
pub use deps::Deps;
pub use keys::well_known;
pub use mfa::{mfa_totp_confirm, mfa_totp_disable, mfa_totp_setup, mfa_totp_undo, mfa_verify};
use sessions::tokens::{
    PresentedRefreshToken, SignIn, begin_session, check_cookie_mode_origin,
    presented_refresh_token, problem_clearing_cookies, session_tokens, token_response, user_agent,
};
pub use sessions::{list_sessions, logout, refresh, revoke_session};
use sign_in::auth::{
    Caller, authenticate, authenticate_live, authenticated_delivery, reauthenticate, token_user,
};
pub use sign_in::login;

/// What an endpoint's inner function answers: a response, or the error `handle` turns into one.
type Reply = Result<Response, ApiError>;

/// Turns a handler's outcome into the response; only outages and bugs are logged as errors.
fn answer(outcome: Result<Response, ApiError>) -> Result<Response, Infallible> {
    Ok(match outcome {
        Ok(response) => response,
        Err(err) => {
            if err.status().is_server_error() {
                tracing::error!(code = err.code(), "request failed");
            }
            http::problem(&err)
        }
    })
}

/// The method check every function makes: API Gateway routes by method, but a function invoked
/// directly (or through a catch-all route) must not act on another verb.
fn require_method(req: &Request, allowed: &[lambda_http::http::Method]) -> Result<(), ApiError> {
    if allowed.contains(req.method()) {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed)
    }
}

/// The client address for security events (LG-06).
fn client_ip(req: &Request) -> String {
    http::source_ip(req).unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::testing::{MemoryStore, alice, authed, body_json, deps, sid, sign_in, with_alice};

    /// The status and problem code of `response`.
    fn outcome(response: Result<Response, Infallible>) -> (u16, Value) {
        let response = response.expect("infallible");
        let body = if response.body().is_empty() {
            Value::Null
        } else {
            body_json(&response)["code"].clone()
        };
        (response.status().as_u16(), body)
    }

    /// Each endpoint that manages sessions or security settings, called with `tokens`' access
    /// token and a body that changes nothing (an unknown session, missing fields): its name and
    /// what it answered.
    async fn security_endpoints(
        deps: &Deps<MemoryStore>,
        tokens: &Value,
    ) -> Vec<(&'static str, (u16, Value))> {
        let empty = json!({});
        let others = json!({"scope": "others"});
        let email = json!({"email": "elsewhere@example.com"});
        let unknown = "/auth/sessions/5b0e6f1c-8a3d-4e7f-9b2c-1d4a6e8f0c3b";
        let req = |method, path, body: Option<&Value>| authed(method, path, tokens, body);
        let body = Some(&empty);
        vec![
            (
                "list",
                outcome(list_sessions::handle(deps, req("GET", "/auth/sessions", None)).await),
            ),
            (
                "revoke",
                outcome(revoke_session::handle(deps, req("DELETE", unknown, None)).await),
            ),
            (
                "logout others",
                outcome(logout::handle(deps, req("POST", "/auth/logout", Some(&others))).await),
            ),
            (
                "password",
                outcome(
                    change_password::handle(deps, req("POST", "/auth/password/change", body)).await,
                ),
            ),
            (
                "email",
                outcome(update_me::handle(deps, req("PATCH", "/auth/me", Some(&email))).await),
            ),
            (
                "totp setup",
                outcome(
                    mfa_totp_setup::handle(deps, req("POST", "/auth/mfa/totp/setup", body)).await,
                ),
            ),
            (
                "totp confirm",
                outcome(
                    mfa_totp_confirm::handle(deps, req("POST", "/auth/mfa/totp/confirm", body))
                        .await,
                ),
            ),
            (
                "totp off",
                outcome(
                    mfa_totp_disable::handle(deps, req("DELETE", "/auth/mfa/totp", body)).await,
                ),
            ),
            (
                "delete",
                outcome(delete_me::handle(deps, req("DELETE", "/auth/me", body)).await),
            ),
        ]
    }

    #[tokio::test]
    async fn the_sample_events_of_the_signed_in_endpoints_reach_their_handlers() {
        // Each event carries a placeholder for the access token: its handler refuses it.
        let deps = deps();
        for name in [
            "update-me",
            "change-password",
            "delete-me",
            "list-sessions",
            "revoke-session",
            "mfa-totp-setup",
            "mfa-totp-confirm",
            "mfa-totp-disable",
        ] {
            let req = crate::testing::event(name);
            let answer = match name {
                "update-me" => update_me::handle(&deps, req).await,
                "change-password" => change_password::handle(&deps, req).await,
                "delete-me" => delete_me::handle(&deps, req).await,
                "list-sessions" => list_sessions::handle(&deps, req).await,
                "revoke-session" => revoke_session::handle(&deps, req).await,
                "mfa-totp-setup" => mfa_totp_setup::handle(&deps, req).await,
                "mfa-totp-confirm" => mfa_totp_confirm::handle(&deps, req).await,
                _ => mfa_totp_disable::handle(&deps, req).await,
            };
            assert_eq!(outcome(answer), (401, json!("invalid_token")), "{name}");
        }
    }

    #[tokio::test]
    async fn an_ended_sessions_access_token_manages_nothing() {
        // SS-02: the owner ends a session; its access token, still within its lifetime, is
        // refused by every endpoint that manages sessions or security settings.
        let (deps, owner) = with_alice().await;
        let thief = sign_in(&deps, "alice").await;
        let end = authed(
            "DELETE",
            &format!("/auth/sessions/{}", sid(&thief)),
            &owner,
            None,
        );
        assert_eq!(outcome(revoke_session::handle(&deps, end).await).0, 204);
        for (endpoint, answer) in security_endpoints(&deps, &thief).await {
            assert_eq!(answer, (401, json!("invalid_token")), "{endpoint}");
        }
        // Who the token names may still be read from the token alone.
        let me = me::handle(&deps, authed("GET", "/auth/me", &thief, None)).await;
        assert_eq!(outcome(me).0, 200);
        // The owner's session was not touched.
        let listed = list_sessions::handle(&deps, authed("GET", "/auth/sessions", &owner, None));
        assert_eq!(outcome(listed.await).0, 200);
    }

    #[tokio::test]
    async fn a_live_sessions_access_token_gets_past_the_check() {
        // The same calls with a live session get past it, to their own answers.
        let deps = deps();
        let answers = security_endpoints(&deps, &alice(&deps).await).await;
        let statuses: Vec<(&str, u16)> = answers
            .iter()
            .map(|(name, (status, _))| (*name, *status))
            .collect();
        assert_eq!(
            statuses,
            [
                ("list", 200),
                ("revoke", 404),
                ("logout others", 204),
                ("password", 422),
                ("email", 403),
                ("totp setup", 422),
                ("totp confirm", 422),
                ("totp off", 422),
                ("delete", 422),
            ]
        );
    }
}
