//! The endpoints. Each handler is generic over the store, so the same code runs against
//! DynamoDB in Lambda and against the in-memory fake in tests. A handler never fails: client
//! errors and outages alike become problem responses here.

use std::convert::Infallible;

use lambda_http::Request;

use crate::error::ApiError;
use crate::http::{self, Response};

/// Declares an endpoint's `handle`: it refuses any other method than the route's (API Gateway
/// routes by method, but a function invoked directly or through a catch-all route must not act
/// on another verb), then runs `$inner` in a span of its name, and turns its outcome into the
/// response. A handler never fails: client errors and outages alike become problem responses.
///
/// `endpoint!(login, [POST], Users + Limits);` is the whole entry point of `login`.
macro_rules! endpoint {
    ($inner:ident, [$($method:ident),+], $($bound:tt)+) => {
        pub async fn handle<S: $($bound)+>(
            deps: &$crate::handlers::Deps<S>,
            req: ::lambda_http::Request,
        ) -> Result<$crate::http::Response, ::std::convert::Infallible> {
            use ::tracing::Instrument as _;
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
pub mod sessions;
pub mod sign_in;

pub use account::{change_password, delete_me, me, register, update_me};
pub use codes::{forgot_password, resend_verification, reset_password, verify_email};
pub use deps::Deps;
pub use keys::well_known;
pub use mfa::{mfa_totp_confirm, mfa_totp_disable, mfa_totp_setup, mfa_verify};
use sessions::tokens::{
    PresentedRefreshToken, SignIn, begin_session, check_cookie_mode_origin,
    presented_refresh_token, problem_clearing_cookies, session_tokens, token_response, user_agent,
};
pub use sessions::{list_sessions, logout, refresh, revoke_session};
use sign_in::auth::{Caller, authenticate, authenticated_delivery, reauthenticate, token_user};
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
