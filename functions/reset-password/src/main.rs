//! POST /auth/password/reset: set a new password with a mailed code.

use lambda_http::Error;
use shared::handlers::{Deps, reset_password};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::for_function(env!("CARGO_PKG_NAME")).await?;
    shared::outbox::serve(deps, reset_password::handle).await
}
