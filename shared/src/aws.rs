//! The AWS SDK setup every function shares, built once per cold start.

use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};

/// The root certificates AWS service endpoints chain to (Amazon Trust Services' four roots and
/// the Starfield root that cross-signs them), compiled in: no cold start reads and parses the
/// platform's whole store. Public certificates, from Debian's ca-certificates.
const AWS_ROOTS: &[u8] = include_bytes!("../certs/aws-roots.pem");

/// An HTTPS client (rustls on aws-lc) that trusts only [`AWS_ROOTS`].
fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    let trust = TrustStore::empty().with_pem_certificate(AWS_ROOTS);
    let context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .unwrap_or_else(|_| unreachable!("a trust store always builds"));
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https()
}

/// The AWS SDK configuration shared by every client: region, credentials and endpoint from the
/// standard AWS environment (`AWS_ENDPOINT_URL` points it at a local endpoint), with short
/// timeouts so that a slow dependency fails fast instead of holding the function (RL-01).
pub async fn sdk_config() -> aws_config::SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(1))
        .operation_attempt_timeout(std::time::Duration::from_secs(2))
        .operation_timeout(std::time::Duration::from_secs(5))
        .build();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .http_client(http_client());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_roots_are_the_five_aws_roots() {
        let pem = std::str::from_utf8(AWS_ROOTS).expect("ascii");
        assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----").count(), 5);
        assert_eq!(pem.matches("-----END CERTIFICATE-----").count(), 5);
    }

    #[tokio::test]
    async fn an_https_call_builds_its_tls_context_from_them() {
        // The PEM is parsed when the first HTTPS connection is set up: a bad certificate would
        // panic there. Nothing listens on this port, so the call fails to connect, cleanly.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port");
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http_client())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(format!("https://{closed}"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
            .load()
            .await;
        let result = aws_sdk_dynamodb::Client::new(&sdk)
            .list_tables()
            .send()
            .await;
        let err = result.expect_err("nothing listens there");
        assert!(
            matches!(err, aws_sdk_dynamodb::error::SdkError::DispatchFailure(_)),
            "{err:?}"
        );
    }
}
