//! GET /auth/me: the signed-in user.

use lambda_http::{Error, run, service_fn};
use shared::handlers::{Deps, me};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::for_function(env!("CARGO_PKG_NAME")).await?;
    run(service_fn(|req| me::handle(&deps, req))).await
}
