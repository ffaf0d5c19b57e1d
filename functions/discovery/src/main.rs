//! GET /.well-known/openid-configuration: where verifiers find the issuer's keys.

use lambda_http::{Error, run, service_fn};
use shared::handlers::well_known::WellKnown;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let well_known = WellKnown::from_env().await?;
    run(service_fn(|req| async {
        Ok::<_, Error>(well_known.discovery(req).await)
    }))
    .await
}
