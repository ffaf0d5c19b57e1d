//! GET /auth/sessions: the caller's live sessions.

use lambda_http::{Error, run, service_fn};
use shared::handlers::{Deps, list_sessions};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::for_function(env!("CARGO_PKG_NAME")).await?;
    run(service_fn(|req| list_sessions::handle(&deps, req))).await
}
