//! GET /.well-known/jwks.json: the public keys that verify access tokens.

use shared::handlers::well_known::{Document, serve};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    serve(Document::Jwks).await
}
