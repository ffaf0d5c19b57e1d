//! POST /auth/mfa/verify: the second step of a sign-in, for the token response.

use lambda_http::{Error, run, service_fn};
use shared::handlers::{Deps, mfa_verify};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::for_function(env!("CARGO_PKG_NAME")).await?;
    run(service_fn(|req| mfa_verify::handle(&deps, req))).await
}
