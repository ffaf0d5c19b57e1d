//! POST /auth/register: create an account, sign it in, and mail its verification code.

use lambda_http::Error;
use shared::handlers::{Deps, KeysNeeded, register};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::from_env_with_mail(KeysNeeded::Sign).await?;
    shared::outbox::serve(deps, register::handle).await
}
