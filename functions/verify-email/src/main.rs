//! POST /auth/email/verify: mark the address verified with the code mailed to it.

use lambda_http::{Error, run, service_fn};
use shared::handlers::{Deps, verify_email};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::for_function(env!("CARGO_PKG_NAME")).await?;
    run(service_fn(|req| verify_email::handle(&deps, req))).await
}
