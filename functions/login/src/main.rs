//! POST /auth/login: sign in with an email or a username.

use lambda_http::{Error, run, service_fn};
use shared::handlers::{Deps, KeysNeeded, login};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::from_env(KeysNeeded::Sign).await?;
    run(service_fn(|req| login::handle(&deps, req))).await
}
