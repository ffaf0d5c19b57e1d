//! POST /auth/mfa/totp/confirm: turn TOTP on with a first code; answer the recovery codes.

use lambda_http::Error;
use shared::handlers::{Deps, mfa_totp_confirm};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::for_function(env!("CARGO_PKG_NAME")).await?;
    shared::outbox::serve(deps, mfa_totp_confirm::handle).await
}
