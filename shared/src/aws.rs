//! The AWS SDK setup every function shares, built once per cold start.

/// The AWS SDK configuration shared by every client: region, credentials and endpoint from the
/// standard AWS environment (`AWS_ENDPOINT_URL` points it at a local endpoint), with short
/// timeouts so that a slow dependency fails fast instead of holding the function (RL-01).
pub async fn sdk_config() -> aws_config::SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(1))
        .operation_attempt_timeout(std::time::Duration::from_secs(2))
        .operation_timeout(std::time::Duration::from_secs(5))
        .build();
    let mut loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(timeouts);
    // Lambda hands every function its region and credentials in the environment. Taking them
    // from there directly skips the provider chains' profile-file reads at each cold start.
    if let Ok(region) = std::env::var("AWS_REGION") {
        loader = loader.region(aws_config::Region::new(region));
    }
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
        loader = loader.credentials_provider(
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        );
    }
    loader.load().await
}

/// The value of a Secrets Manager secret at `stage` (`AWSCURRENT`, or `AWSPREVIOUS` during a
/// rotation), read once per cold start. The error names the failure, never the value.
pub async fn secret_string(
    sdk: &aws_config::SdkConfig,
    secret_id: &str,
    stage: &str,
) -> Result<secrecy::SecretString, String> {
    let output = aws_sdk_secretsmanager::Client::new(sdk)
        .get_secret_value()
        .secret_id(secret_id)
        .version_stage(stage)
        .send()
        .await
        .map_err(|err| aws_sdk_secretsmanager::error::DisplayErrorContext(&err).to_string())?;
    output
        .secret_string
        .map(secrecy::SecretString::from)
        .ok_or_else(|| "the secret has no string value".to_owned())
}
