//! DELETE /auth/mfa/totp: turn TOTP off with the password and a code.

use lambda_http::Error;
use shared::handlers::{Deps, KeysNeeded, mfa_totp_disable};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::from_env_with_mfa_and_mail(KeysNeeded::Verify).await?;
    shared::outbox::serve(deps, mfa_totp_disable::handle).await
}
