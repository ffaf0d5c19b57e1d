//! DELETE /auth/me: delete the account.

use lambda_http::{Error, run, service_fn};
use shared::handlers::{Deps, KeysNeeded, delete_me};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::from_env(KeysNeeded::Verify).await?;
    run(service_fn(|req| delete_me::handle(&deps, req))).await
}
