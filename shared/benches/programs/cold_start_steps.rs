//! Where a cold start's time goes: each step of `Deps::from_env`, timed (`make bench` prints it).

use std::time::Instant;

#[tokio::main]
async fn main() {
    let start = Instant::now();
    let config = shared::Config::from_env().unwrap_or_else(|err| panic!("{err}"));
    let config_done = start.elapsed();
    let sdk = shared::aws::sdk_config().await;
    let sdk_done = start.elapsed();
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let client_done = start.elapsed();
    let keys = shared::jwt::TokenKeys::new(&config);
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
