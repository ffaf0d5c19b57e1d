//! POST /auth/register: create an account, sign it in, and mail its verification code.

use lambda_http::Error;
use shared::handlers::{Deps, register};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::for_function(env!("CARGO_PKG_NAME")).await?;
    shared::outbox::serve(deps, register::handle).await
}
