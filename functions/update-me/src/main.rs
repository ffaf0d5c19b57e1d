//! PATCH and PUT /auth/me: change the username, email or full name (an email change is
//! announced to the old address).

use lambda_http::{Error, run, service_fn};
use shared::handlers::{Deps, KeysNeeded, update_me};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::from_env_with_mail(KeysNeeded::Verify).await?;
    run(service_fn(|req| update_me::handle(&deps, req))).await
}
