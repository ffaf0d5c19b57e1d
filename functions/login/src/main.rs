//! POST /auth/login: sign in with an email or a username.

use lambda_http::{Error, run, service_fn, tracing};
use shared::handlers::{Deps, login};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let deps = Deps::from_env().await?;
    run(service_fn(|req| login::handle(&deps, req))).await
}
