//! GET /.well-known/jwks.json: the public keys that verify access tokens.

use lambda_http::{Error, run, service_fn};
use shared::handlers::well_known::WellKnown;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let well_known = WellKnown::from_env().await?;
    run(service_fn(|req| async {
        Ok::<_, Error>(well_known.jwks(req).await)
    }))
    .await
}
