//! The floor for a function that reads a secret at start: the hello-world of `baseline_hello`,
//! which first reads the secret named by `JWT_SECRET_ID` from Secrets Manager, through the same
//! SDK configuration and call the functions use (`make bench` builds and measures it). A
//! function's cold start against this floor is what its own start-up costs beyond one read.

use lambda_http::{Body, Error, Request, Response, run, service_fn};
use secrecy::ExposeSecret;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let id = std::env::var("JWT_SECRET_ID")?;
    let sdk = shared::aws::sdk_config().await;
    let secret = shared::aws::secret_string(&sdk, &id, "AWSCURRENT").await?;
    let length = secret.expose_secret().len();
    run(service_fn(move |_: Request| async move {
        Ok::<_, Error>(Response::new(Body::from(format!("hello {length}"))))
    }))
    .await
}
