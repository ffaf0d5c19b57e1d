//! GET /auth/me: the signed-in user.

use lambda_http::{Error, run, service_fn};
use shared::handlers::{Deps, KeysNeeded, me};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::from_env(KeysNeeded::Verify).await?;
    run(service_fn(|req| me::handle(&deps, req))).await
}
