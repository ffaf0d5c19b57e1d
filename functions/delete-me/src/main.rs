//! DELETE /auth/me: delete the account.

use lambda_http::{Error, run, service_fn};
use shared::handlers::{Deps, delete_me};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::for_function(env!("CARGO_PKG_NAME")).await?;
    run(service_fn(|req| delete_me::handle(&deps, req))).await
}
