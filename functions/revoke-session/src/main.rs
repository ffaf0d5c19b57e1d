//! DELETE /auth/sessions/{id}: end one of the caller's sessions.

use lambda_http::{Error, run, service_fn};
use shared::handlers::{Deps, revoke_session};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::for_function(env!("CARGO_PKG_NAME")).await?;
    run(service_fn(|req| revoke_session::handle(&deps, req))).await
}
