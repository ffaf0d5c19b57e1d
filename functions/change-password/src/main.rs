//! POST /auth/password/change: replace the password and sign in afresh.

use lambda_http::Error;
use shared::handlers::{Deps, change_password};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::for_function(env!("CARGO_PKG_NAME")).await?;
    shared::outbox::serve(deps, change_password::handle).await
}
