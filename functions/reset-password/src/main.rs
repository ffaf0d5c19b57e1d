//! POST /auth/password/reset: set a new password with a mailed code.

use lambda_http::Error;
use shared::handlers::{Deps, KeysNeeded, reset_password};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::from_env_with_mail(KeysNeeded::None).await?;
    shared::outbox::serve(deps, reset_password::handle).await
}
