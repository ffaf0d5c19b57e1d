//! POST /auth/email/verify/resend: mail a new verification code (sent after the answer: see
//! `shared::outbox`).

use lambda_http::Error;
use shared::handlers::{Deps, resend_verification};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::for_function(env!("CARGO_PKG_NAME")).await?;
    shared::outbox::serve(deps, resend_verification::handle).await
}
