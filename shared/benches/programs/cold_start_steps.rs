//! Where a cold start's time goes: each step of `Deps::from_env`, timed (`make bench` prints it).

use std::time::Instant;

#[tokio::main]
async fn main() {
    // The key document a signing function reads from Secrets Manager; made before the clock
    // starts, since making keys is the rotation's work, not a cold start's.
    let document = shared::signing::KeyDocument::genesis("http://127.0.0.1:9000", 0)
        .unwrap_or_else(|err| panic!("{err}"))
        .to_json();
    let start = Instant::now();
    let config = shared::Config::from_env().unwrap_or_else(|err| panic!("{err}"));
    let config_done = start.elapsed();
    let sdk = shared::aws::sdk_config().await;
    let sdk_done = start.elapsed();
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let client_done = start.elapsed();
    let access = shared::signing::KeyDocument::parse(&document)
        .and_then(|document| shared::jwt::AccessKeys::signing(&document))
        .unwrap_or_else(|err| panic!("{err}"));
    let keys = shared::jwt::TokenKeys::new(&config, access);
    let keys_done = start.elapsed();
    let _ = std::hint::black_box((client, keys));
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    println!(
        "{{\"config_ms\": {:.3}, \"sdk_config_ms\": {:.3}, \"dynamodb_client_ms\": {:.3}, \"token_keys_ms\": {:.3}}}",
        ms(config_done),
        ms(sdk_done - config_done),
        ms(client_done - sdk_done),
        ms(keys_done - client_done)
    );
}
