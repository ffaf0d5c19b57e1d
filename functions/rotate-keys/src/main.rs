//! The rotation function of the signing keys' secret: Secrets Manager invokes it for each step
//! of a rotation (at deploy time for the first keys, then on the secret's schedule).

use std::time::Duration;

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use shared::Clock;
use shared::functions::var;
use shared::rotation::{self, RotationEvent, RotationSettings, SecretsManager};
use shared::store::DynamoStore;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let settings = settings()?;
    let sdk = shared::aws::sdk_config().await;
    let secrets = SecretsManager(aws_sdk_secretsmanager::Client::new(&sdk));
    let table = std::env::var(var::USERS_TABLE)
        .ok()
        .filter(|table| !table.is_empty())
        .ok_or("USERS_TABLE is not set")?;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table, "");
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

/// `JWT_ISSUER` (required here: the deployment passes the API's URL or the custom domain),
/// `ACCESS_TOKEN_TTL_SECONDS`, and `KEY_LISTED_BEFORE_SIGNING_SECONDS` (default two hours,
/// API Gateway's key cache).
fn settings() -> Result<RotationSettings, Error> {
    let issuer = std::env::var(var::JWT_ISSUER)
        .ok()
        .filter(|issuer| !issuer.is_empty())
        .ok_or("JWT_ISSUER is not set")?;
    let seconds = |name: &str, default: Duration| -> Result<Duration, Error> {
        match std::env::var(name) {
            Err(_) => Ok(default),
            Ok(raw) => {
                Ok(Duration::from_secs(raw.trim().parse().map_err(|_| {
                    format!("{name} is not a number of seconds")
                })?))
            }
        }
    };
    let listed = seconds(
        var::KEY_LISTED_BEFORE_SIGNING_SECONDS,
        shared::signing::API_GATEWAY_KEY_CACHE,
    )?;
    let access_ttl = seconds(var::ACCESS_TOKEN_TTL_SECONDS, Duration::from_secs(600))?;
    Ok(RotationSettings {
        issuer,
        rules: rotation::rules(listed, access_ttl),
    })
}
