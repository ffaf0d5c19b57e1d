//! DELETE /auth/mfa/totp: turn TOTP off with the password and a code.

use lambda_http::Error;
use shared::handlers::{Deps, mfa_totp_disable};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::for_function(env!("CARGO_PKG_NAME")).await?;
    shared::outbox::serve(deps, mfa_totp_disable::handle).await
}
