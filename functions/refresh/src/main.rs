//! POST /auth/refresh: trade a refresh token for a new pair (rotation with reuse detection).

use lambda_http::{Error, run, service_fn};
use shared::handlers::{Deps, refresh};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::for_function(env!("CARGO_PKG_NAME")).await?;
    run(service_fn(|req| refresh::handle(&deps, req))).await
}
