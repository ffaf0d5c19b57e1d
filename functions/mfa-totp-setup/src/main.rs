//! POST /auth/mfa/totp/setup: with the current password, a new TOTP secret pending confirmation.

use lambda_http::{Error, run, service_fn};
use shared::handlers::{Deps, mfa_totp_setup};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::for_function(env!("CARGO_PKG_NAME")).await?;
    run(service_fn(|req| mfa_totp_setup::handle(&deps, req))).await
}
