//! The local stack's throwaway signing keys (`make dev`), never used when deployed: makes a key
//! document, stores it as a secret of the local Secrets Manager, publishes its public half to
//! the local DynamoDB, and prints `SIGNING_KEYS_SECRET_ID=<arn>` for the functions' environment.
//!
//! Usage: `local-keys <issuer> <secret name>`, with the local AWS endpoints in the environment.

use lambda_runtime::Error;
use shared::Clock;
use shared::signing::KeyDocument;
use shared::store::{DynamoStore, Published};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let (Some(issuer), Some(name)) = (args.next(), args.next()) else {
        return Err("usage: local-keys <issuer> <secret name>".into());
    };
    let sdk = shared::aws::sdk_config().await;
    let now = shared::SystemClock.unix().unsigned_abs();
    let document = KeyDocument::genesis(&issuer, now)?;

    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let created = secrets
        .create_secret()
        .name(&name)
        .secret_string(document.to_json())
        .send()
        .await;
    let arn = match created {
        Ok(output) => output.arn.unwrap_or(name),
        // A second run against the same local Secrets Manager: replace the value.
        Err(_) => secrets
            .put_secret_value()
            .secret_id(&name)
            .secret_string(document.to_json())
            .send()
            .await?
            .arn
            .unwrap_or(name),
    };

    let table = std::env::var("USERS_TABLE").map_err(|_| "USERS_TABLE is not set")?;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table, "");
    store.publish_keys(&document.public()?).await?;
    println!("SIGNING_KEYS_SECRET_ID={arn}");
    Ok(())
}
