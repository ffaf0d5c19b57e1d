//! POST /auth/password/forgot: mail a reset code (sent after the answer: see `shared::outbox`).

use lambda_http::Error;
use shared::handlers::{Deps, KeysNeeded, forgot_password};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::from_env_with_mail(KeysNeeded::None).await?;
    shared::outbox::serve(deps, forgot_password::handle).await
}
