//! GET /.well-known/openid-configuration: where verifiers find the issuer's keys.

use shared::handlers::well_known::{Document, serve};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    serve(Document::Discovery).await
}
