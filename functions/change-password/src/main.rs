//! POST /auth/password/change: replace the password and sign in afresh.

use lambda_http::Error;
use shared::handlers::{Deps, KeysNeeded, change_password};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::from_env_with_mail(KeysNeeded::Sign).await?;
    shared::outbox::serve(deps, change_password::handle).await
}
