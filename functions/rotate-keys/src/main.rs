//! The rotation function of the signing keys' secret: Secrets Manager invokes it for each step
//! of a rotation (at deploy time for the first keys, then on the secret's schedule).

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use shared::Clock;
use shared::config::KeyRotationSettings;
use shared::rotation::{self, RotationEvent, RotationSettings, SecretsManager};
use shared::store::DynamoStore;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let settings = KeyRotationSettings::from_lookup(|name| std::env::var(name).ok())?;
    let sdk = shared::aws::sdk_config().await;
    let secrets = SecretsManager(aws_sdk_secretsmanager::Client::new(&sdk));
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let store = DynamoStore::new(client, settings.users_table.clone(), "");
    let settings = RotationSettings {
        issuer: settings.issuer,
        rules: rotation::rules(
            settings.listed_before_signing,
            settings.access_ttl,
            settings.keys_max_age,
        ),
    };
    run(service_fn(|event: LambdaEvent<RotationEvent>| {
        let (secrets, store, settings) = (&secrets, &store, &settings);
        async move {
            let event = event.payload;
            let now = shared::SystemClock.unix().unsigned_abs();
            match rotation::rotate(secrets, store, settings, &event, now).await {
                Ok(()) => {
                    tracing::info!(event = "key_rotation", step = ?event.step, "done");
                    Ok::<(), Error>(())
                }
                Err(err) => {
                    tracing::error!(event = "key_rotation_failed", step = ?event.step, error = %err);
                    Err(err.into())
                }
            }
        }
    }))
    .await
}
