//! `POST /auth/email/verify/resend`: mail a new verification code to an address that awaits
//! one. The same 202 whatever the address, throttled like forgot-password (see
//! `codes::answer_code_request`).

use lambda_http::Request;

use crate::handlers::codes::{CodeKind, answer_code_request};
use crate::handlers::{Deps, Reply};
use crate::store::{Codes, Limits, Users};

/// The one answer, whatever happened.
pub const ACCEPTED_MESSAGE: &str = CodeKind::EmailVerification.accepted_message();

endpoint!(resend_verification, [POST], Users + Codes + Limits);

async fn resend_verification<S: Users + Codes + Limits>(deps: &Deps<S>, req: &Request) -> Reply {
    answer_code_request(deps, req, CodeKind::EmailVerification).await
}
