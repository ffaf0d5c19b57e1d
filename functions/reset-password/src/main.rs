//! POST /auth/password/reset: set a new password with a mailed code.

use lambda_http::{Error, run, service_fn};
use shared::handlers::{Deps, KeysNeeded, reset_password};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::from_env_with_mail(KeysNeeded::None).await?;
    run(service_fn(|req| reset_password::handle(&deps, req))).await
}
