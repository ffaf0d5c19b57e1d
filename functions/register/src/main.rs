//! POST /auth/register: create an account and sign it in.

use lambda_http::{Error, run, service_fn};
use shared::handlers::{Deps, KeysNeeded, register};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::from_env(KeysNeeded::Sign).await?;
    run(service_fn(|req| register::handle(&deps, req))).await
}
