//! POST /auth/password/forgot: mail a reset code (sent after the answer: see `shared::outbox`).

use lambda_http::Error;
use shared::handlers::{Deps, forgot_password};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::for_function(env!("CARGO_PKG_NAME")).await?;
    shared::outbox::serve(deps, forgot_password::handle).await
}
