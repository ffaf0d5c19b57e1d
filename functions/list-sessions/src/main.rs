//! GET /auth/sessions: the caller's live sessions.

use lambda_http::{Error, run, service_fn};
use shared::handlers::{Deps, KeysNeeded, list_sessions};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::from_env(KeysNeeded::Verify).await?;
    run(service_fn(|req| list_sessions::handle(&deps, req))).await
}
