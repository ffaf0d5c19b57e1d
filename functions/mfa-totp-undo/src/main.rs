//! POST /auth/mfa/totp/undo: the mailbox turns TOTP off with the code its notice carried.

use lambda_http::Error;
use shared::handlers::{Deps, mfa_totp_undo};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let deps = Deps::for_function(env!("CARGO_PKG_NAME")).await?;
    shared::outbox::serve(deps, mfa_totp_undo::handle).await
}
