//! DELETE /auth/mfa/totp: turn TOTP off with the password and a code.

use lambda_http::{Error, run, service_fn};
use shared::handlers::{Deps, KeysNeeded, mfa_totp_disable};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::from_env_with_mfa(KeysNeeded::Verify).await?;
    run(service_fn(|req| mfa_totp_disable::handle(&deps, req))).await
}
