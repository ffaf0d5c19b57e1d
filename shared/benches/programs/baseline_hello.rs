//! The floor for cold-start comparisons: a `lambda_http` function that does nothing, built
//! with the same profile as the real ones (`make bench` builds and measures it).

use lambda_http::{Body, Error, Request, Response, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(|_: Request| async {
        Ok::<_, Error>(Response::new(Body::from("hello")))
    }))
    .await
}
