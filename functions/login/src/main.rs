//! POST /auth/login: sign in with an email or a username.

use lambda_http::{Error, run, service_fn};
use shared::handlers::{Deps, login};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::for_function(env!("CARGO_PKG_NAME")).await?;
    run(service_fn(|req| login::handle(&deps, req))).await
}
