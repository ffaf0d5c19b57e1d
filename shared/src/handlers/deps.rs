//! The dependency container: everything a handler needs, built once per cold start, and the
//! clock, counter-key and mail helpers every handler shares.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError};
use crate::error::ApiError;
use crate::jwt::TokenKeys;
use crate::mail::{Mail, MailError, Mailer, SendFuture, SesMailer};
use crate::password::PasswordHasher;
use crate::reset::ResetCodes;
use crate::store::DynamoStore;
use crate::throttle;

/// Everything a handler needs, built once per cold start.
pub struct Deps<S> {
    pub config: Config,
    pub store: S,
    pub passwords: PasswordHasher,
    pub tokens: TokenKeys,
    pub reset_codes: ResetCodes,
    pub mailer: Arc<dyn Mailer>,
    pub clock: Arc<dyn Clock>,
    /// Keys the names of throttling counters, so no address is stored in the clear.
    pub(super) throttle_key: [u8; 32],
}

impl<S> Deps<S> {
    pub fn new(config: Config, store: S) -> Self {
        Self {
            tokens: TokenKeys::new(&config),
            reset_codes: ResetCodes::new(&config),
            throttle_key: config.derived_key(b"throttle"),
            passwords: PasswordHasher::new(),
            mailer: Arc::new(NoMailer),
            clock: Arc::new(SystemClock),
            config,
            store,
        }
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn with_mailer(mut self, mailer: Arc<dyn Mailer>) -> Self {
        self.mailer = mailer;
        self
    }

    pub(super) fn now(&self) -> u64 {
        self.clock.unix().unsigned_abs()
    }

    pub(super) fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.now().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
    }

    pub(super) fn now_datetime(&self) -> Result<OffsetDateTime, ApiError> {
        OffsetDateTime::from_unix_timestamp(self.clock.unix()).map_err(|_| ApiError::Internal)
    }

    /// A counter name for `value` (an address, an identifier) that does not reveal it.
    pub(super) fn key_part(&self, value: &str) -> String {
        throttle::key_part(&self.throttle_key, value)
    }

    /// Sends a mail; a failure is logged and otherwise ignored (SES-02).
    pub(super) async fn send_quietly(&self, mail: &Mail, kind: &'static str) {
        if let Err(err) = self.mailer.send(mail).await {
            tracing::error!(event = "mail_failed", kind, error = %err);
        }
    }
}

impl Deps<DynamoStore> {
    /// Reads the configuration and builds the AWS clients (endpoint, region and credentials come
    /// from the usual AWS environment, `AWS_ENDPOINT_URL` included).
    pub async fn from_env() -> Result<Self, ConfigError> {
        Ok(Self::build().await?.0)
    }

    /// Like [`Deps::from_env`], with a mailer for the functions that send mail: `MAIL_FROM` is
    /// then required.
    pub async fn from_env_with_mail() -> Result<Self, ConfigError> {
        let (deps, sdk) = Self::build().await?;
        let Some(from) = deps.config.mail.from.clone() else {
            tracing::error!("refusing to start: MAIL_FROM is not set");
            return Err(ConfigError::Missing("MAIL_FROM"));
        };
        let mailer = SesMailer::new(aws_sdk_sesv2::Client::new(&sdk), from);
        Ok(deps.with_mailer(Arc::new(mailer)))
    }

    async fn build() -> Result<(Self, aws_config::SdkConfig), ConfigError> {
        let config = Config::from_env().inspect_err(|err| {
            tracing::error!(error = %err, "refusing to start: invalid configuration");
        })?;
        let sdk = crate::aws::sdk_config().await;
        let client = aws_sdk_dynamodb::Client::new(&sdk);
        let store = DynamoStore::new(client, &config.tables.users, &config.tables.tokens);
        Ok((Self::new(config, store), sdk))
    }
}

/// The mailer of functions that send no mail.
struct NoMailer;

impl Mailer for NoMailer {
    fn send<'a>(&'a self, _mail: &'a Mail) -> SendFuture<'a> {
        Box::pin(async { Err(MailError("this function sends no mail".into())) })
    }
}
