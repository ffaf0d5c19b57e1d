//! GET /auth/me: the signed-in user.

use lambda_http::{Error, run, service_fn, tracing};
use shared::handlers::{Deps, me};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let deps = Deps::from_env().await?;
    run(service_fn(|req| me::handle(&deps, req))).await
}
