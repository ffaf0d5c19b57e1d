//! The endpoints. Each handler is generic over the store, so the same code runs against
//! DynamoDB in Lambda and against the in-memory fake in tests. A handler never fails: client
//! errors and outages alike become problem responses here.

use std::convert::Infallible;

use lambda_http::Request;

use crate::error::ApiError;
use crate::http::{self, Response};

/// Declares an endpoint's `handle`: it refuses any other method than the route's (API Gateway
/// routes by method, but a function invoked directly or through a catch-all route must not act
/// on another verb), then runs `$inner`, and turns its outcome into the response. A handler
/// never fails: client errors and outages alike become problem responses.
///
/// `endpoint!(login, [POST], Users + Limits);` is the whole entry point of `login`.
macro_rules! endpoint {
    ($inner:ident, [$($method:ident),+], $($bound:tt)+) => {
        pub async fn handle<S: $($bound)+>(
            deps: &$crate::handlers::Deps<S>,
            req: ::lambda_http::Request,
        ) -> Result<$crate::http::Response, ::std::convert::Infallible> {
            let methods = [$(::lambda_http::http::Method::$method),+];
            $crate::handlers::answer(match $crate::handlers::require_method(&req, &methods) {
                Ok(()) => $inner(deps, &req).await,
                Err(err) => Err(err),
            })
        }
    };
}

mod auth;
mod codes;
mod deps;
mod second_factor;
mod session;

use auth::{Caller, authenticate, authenticated_delivery, password_field, reauthenticate};
pub use deps::Deps;
use session::{
    PresentedRefreshToken, SignIn, begin_session, check_cookie_mode_origin,
    presented_refresh_token, problem_clearing_cookies, session_tokens, token_response, user_agent,
};

pub mod change_password;
pub mod delete_me;
pub mod forgot_password;
pub mod list_sessions;
pub mod login;
pub mod logout;
pub mod me;
pub mod mfa_totp_confirm;
pub mod mfa_totp_disable;
pub mod mfa_totp_setup;
pub mod mfa_verify;
pub mod refresh;
pub mod register;
pub mod resend_verification;
pub mod reset_password;
pub mod revoke_session;
pub mod update_me;
pub mod verify_email;
pub mod well_known;

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
