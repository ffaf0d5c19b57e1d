//! POST /auth/register: create an account and sign it in.

use lambda_http::{Error, run, service_fn, tracing};
use shared::handlers::{Deps, register};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let deps = Deps::from_env().await?;
    run(service_fn(|req| register::handle(&deps, req))).await
}
