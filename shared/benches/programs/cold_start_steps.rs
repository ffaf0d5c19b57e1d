//! Where a cold start's time goes: each step of `Deps::for_function` for a token-issuing function,
//! in its order, timed (`make bench` prints it). It reads the secrets named by
//! `HASH_KEY_SECRET_ID`, `JWT_SECRET_ID` and `SIGNING_KEYS_SECRET_ID` from the (local) Secrets
//! Manager, as a deployed function does.

use std::time::Instant;

use secrecy::ExposeSecret;

#[tokio::main]
async fn main() {
    let id = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let (hash_key_id, jwt_secret_id, keys_id) = (
        id("HASH_KEY_SECRET_ID"),
        id("JWT_SECRET_ID"),
        id("SIGNING_KEYS_SECRET_ID"),
    );
    let start = Instant::now();
    let sdk = shared::aws::sdk_config().await;
    let sdk_done = start.elapsed();
    let (hash_key, jwt_secret, document) = tokio::join!(
        shared::aws::secret_string(&sdk, &hash_key_id, "AWSCURRENT"),
        shared::aws::secret_string(&sdk, &jwt_secret_id, "AWSCURRENT"),
        shared::aws::secret_string(&sdk, &keys_id, "AWSCURRENT"),
    );
    let (hash_key, jwt_secret, document) = (
        hash_key.unwrap_or_else(|err| panic!("{err}")),
        jwt_secret.unwrap_or_else(|err| panic!("{err}")),
        document.unwrap_or_else(|err| panic!("{err}")),
    );
    let secrets_done = start.elapsed();
    let config = shared::Config::from_lookup(|name| match name {
        "HASH_KEY" => Some(hash_key.expose_secret().to_owned()),
        "JWT_SECRET" => Some(jwt_secret.expose_secret().to_owned()),
        _ => std::env::var(name).ok(),
    })
    .unwrap_or_else(|err| panic!("{err}"));
    let config_done = start.elapsed();
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let client_done = start.elapsed();
    let access = shared::signing::KeyDocument::parse(document.expose_secret())
        .and_then(|document| shared::jwt::AccessKeys::signing(&document))
        .unwrap_or_else(|err| panic!("{err}"));
    let keys = shared::jwt::TokenKeys::new(&config, access);
    let keys_done = start.elapsed();
    let _ = std::hint::black_box((client, keys));
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    println!(
        "{{\"sdk_config_ms\": {:.3}, \"secrets_ms\": {:.3}, \"config_ms\": {:.3}, \"dynamodb_client_ms\": {:.3}, \"token_keys_ms\": {:.3}}}",
        ms(sdk_done),
        ms(secrets_done - sdk_done),
        ms(config_done - secrets_done),
        ms(client_done - config_done),
        ms(keys_done - client_done)
    );
}
