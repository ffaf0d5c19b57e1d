//! PATCH and PUT /auth/me: change the username, email or full name (an email change is
//! announced to the old address).

use lambda_http::Error;
use shared::handlers::{Deps, update_me};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::for_function(env!("CARGO_PKG_NAME")).await?;
    shared::outbox::serve(deps, update_me::handle).await
}
