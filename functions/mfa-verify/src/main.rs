//! POST /auth/mfa/verify: the second step of a sign-in, for the token response.

use lambda_http::{Error, run, service_fn};
use shared::handlers::{Deps, KeysNeeded, mfa_verify};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::from_env_with_mfa(KeysNeeded::Sign).await?;
    run(service_fn(|req| mfa_verify::handle(&deps, req))).await
}
