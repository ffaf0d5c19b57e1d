//! POST /auth/password/forgot: mail a reset code.

use lambda_http::{Error, run, service_fn};
use shared::handlers::{Deps, KeysNeeded, forgot_password};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::from_env_with_mail(KeysNeeded::None).await?;
    run(service_fn(|req| forgot_password::handle(&deps, req))).await
}
