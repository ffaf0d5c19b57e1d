//! POST /auth/logout: end one session, or all of them.

use lambda_http::{Error, run, service_fn};
use shared::handlers::{Deps, logout};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::for_function(env!("CARGO_PKG_NAME")).await?;
    run(service_fn(|req| logout::handle(&deps, req))).await
}
