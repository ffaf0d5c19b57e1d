//! The dependency container: everything a handler needs, built once per cold start, and the
//! clock, counter-key and mail helpers every handler shares.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError, Tables};
use crate::error::ApiError;
use crate::functions::{self, KeysNeeded, Needs, Start, var};
use crate::jwt::{AccessKeys, TokenKeys};
use crate::key_ring::{self, DocumentFuture, DocumentSource, KeyRing, KeySource};
use crate::mail::{Mail, MailError, Mailer, SendFuture, SesMailer};
use crate::mailed_codes::MailedCodes;
use crate::password::PasswordHasher;
use crate::signing::{KeyDocument, PublicKeys};
use crate::store::{DynamoStore, Limits, Published, SessionRecord, StoreError, keys};
use crate::throttle::{self, Quota};
use crate::totp::MfaKeys;

/// Everything a handler needs, built once per cold start.
pub struct Deps<S> {
    pub config: Config,
    pub store: S,
    pub passwords: PasswordHasher,
    /// The token keys in use, kept in step with the signing keys' rotation.
    pub(crate) keys: KeyRing,
    pub reset_codes: MailedCodes,
    pub email_codes: MailedCodes,
    pub mailer: Arc<dyn Mailer>,
    pub clock: Arc<dyn Clock>,
    /// The MFA key's uses, in the functions given `MFA_KEY`.
    pub mfa: Option<MfaKeys>,
    /// Keys the names of throttling counters, so no address is stored in the clear.
    pub(super) throttle_key: [u8; 32],
}

impl<S> Deps<S> {
    pub fn new(config: Config, store: S, access: AccessKeys) -> Self {
        Self {
            keys: KeyRing::new(
                TokenKeys::new(&config, access),
                KeySource::Fixed,
                SystemClock.unix().unsigned_abs(),
                config.tokens.keys_max_age,
            ),
            reset_codes: MailedCodes::new(&config),
            email_codes: MailedCodes::for_email(&config),
            throttle_key: config.derived_key(b"throttle"),
            mfa: config.mfa.key.as_ref().map(MfaKeys::new),
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

    /// Re-reads the access-token keys from `source` once they are older than
    /// `PUBLIC_KEYS_MAX_AGE_SECONDS`, counted from now on this clock.
    pub fn with_key_source(mut self, source: KeySource) -> Self {
        let now = self.now();
        self.keys = self.keys.reading_from(source, now);
        self
    }

    /// The token keys in use.
    pub fn tokens(&self) -> Arc<TokenKeys> {
        self.keys.current()
    }

    /// Reads the access-token keys again when the copy in use is stale (see
    /// [`crate::key_ring`]); a failed read is logged and the keys in use stay.
    pub async fn keep_keys_fresh(&self)
    where
        S: Published,
    {
        let now = self.now();
        let access = match self.keys.due(now) {
            None => return,
            Some(KeySource::Fixed) => None,
            Some(KeySource::Published) => Some(match self.store.published_keys().await {
                Ok(published) => key_ring::verifying(published),
                Err(err) => Err(err.to_string()),
            }),
            Some(KeySource::Document(source)) => Some(
                source
                    .read()
                    .await
                    .and_then(|json| key_ring::signing(&json)),
            ),
        };
        let access = access.and_then(|read| {
            read.inspect_err(|reason| {
                tracing::error!(event = "keys_unreadable", reason = %reason, "keeping the keys in use");
            })
            .ok()
        });
        self.keys.replace(&self.config, access, now);
    }

    pub(super) fn now(&self) -> u64 {
        self.clock.unix().unsigned_abs()
    }

    pub(super) fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.now().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
    }

    /// The MFA keys; a function routed to a TOTP endpoint without them is misdeployed.
    pub(super) fn mfa_keys(&self) -> Result<&MfaKeys, ApiError> {
        self.mfa.as_ref().ok_or_else(|| {
            tracing::error!("MFA_KEY is not configured");
            ApiError::Internal
        })
    }

    pub(super) fn now_datetime(&self) -> Result<OffsetDateTime, ApiError> {
        OffsetDateTime::from_unix_timestamp(self.clock.unix()).map_err(|_| ApiError::Internal)
    }

    /// Whether a session record can still refresh now, for a user at `token_version`: its
    /// expiry, the idle timeout and the revocation point (what the list shows and may end).
    pub(super) fn session_is_live(&self, session: &SessionRecord, token_version: u64) -> bool {
        let idle_timeout = self.config.sessions.idle_timeout.as_secs();
        session.is_live(self.now(), idle_timeout, token_version)
    }

    /// A counter name for `value` (an email address, an identifier) that does not reveal it.
    pub(super) fn key_part(&self, value: &str) -> String {
        throttle::key_part(&self.throttle_key, value)
    }

    /// A counter name for the client at `source_ip` (an IPv6 client is its /64, see
    /// [`throttle::client_network`]) that does not reveal it.
    pub(super) fn client_part(&self, source_ip: &str) -> String {
        self.key_part(&throttle::client_network(source_ip))
    }

    /// Takes one unit of the client address's budget for answers of `kind` that reveal
    /// something (registration conflicts, wrong codes), atomically and before the work that
    /// would reveal it: 429 once spent (AB-03: 20 per 5 minutes by default).
    pub(super) async fn take_probe(
        &self,
        kind: &'static str,
        source_ip: &str,
    ) -> Result<Quota, ApiError>
    where
        S: Limits,
    {
        let now = self.now();
        let window = throttle::Window::at(now, self.config.limits.client_window.as_secs());
        let quota = Quota::Counter {
            key: keys::rate(kind, &self.client_part(source_ip), window.index),
            limit: self.config.limits.probe_client_limit,
            resets_at: window.end,
        };
        if let Some(retry_after_secs) = self
            .store
            .consume(std::slice::from_ref(&quota), now)
            .await?
        {
            tracing::warn!(event = "probe_throttled", kind, source_ip = %source_ip);
            return Err(ApiError::TooManyAttempts { retry_after_secs });
        }
        Ok(quota)
    }

    /// Gives back a unit `take_probe` took, for a request that revealed nothing. Best effort:
    /// the request has succeeded, and a unit not given back only tightens the budget.
    pub(super) async fn refund_probe(&self, probe: &Quota)
    where
        S: Limits,
    {
        if let Err(err) = self.store.refund(probe.key()).await {
            tracing::warn!(event = "refund_failed", error = %err);
        }
    }

    /// Sends a mail; a failure is logged and otherwise ignored (SES-02).
    pub(super) async fn send_quietly(&self, mail: &Mail, kind: &'static str) {
        if let Err(err) = self.mailer.send(mail).await {
            tracing::error!(event = "mail_failed", kind, error = %err);
        }
    }
}

impl Deps<DynamoStore> {
    /// Reads the configuration, its secrets and the access token keys of the function `name`
    /// (its package name), as [`super::registry`] lists what it needs, and builds the
    /// AWS clients (endpoint, region and credentials come from the usual AWS environment,
    /// `AWS_ENDPOINT_URL` included). A function that sends mail gets a mailer: `MAIL_FROM` is
    /// then required; a two-step function the MFA key.
    pub async fn for_function(name: &str) -> Result<Self, ConfigError> {
        let Some(Start::Endpoint(needs)) = super::registry::start_of(name) else {
            tracing::error!(
                function = name,
                "refusing to start: not an endpoint of the registry"
            );
            return Err(ConfigError::UnknownFunction(name.to_owned()));
        };
        let (deps, sdk) = Self::build(needs).await.inspect_err(|err| {
            tracing::error!(function = name, error = %err, "refusing to start");
        })?;
        if needs.mail {
            deps.mailing(&sdk)
        } else {
            Ok(deps)
        }
    }

    fn mailing(self, sdk: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        let Some(from) = self.config.mail.from.clone() else {
            tracing::error!("refusing to start: MAIL_FROM is not set");
            return Err(ConfigError::Missing(var::MAIL_FROM));
        };
        let configuration_set = self.config.mail.configuration_set.clone();
        let mailer = SesMailer::new(aws_sdk_sesv2::Client::new(sdk), from, configuration_set);
        Ok(self.with_mailer(Arc::new(mailer)))
    }

    async fn build(needs: Needs) -> Result<(Self, aws_config::SdkConfig), ConfigError> {
        let sdk = crate::aws::sdk_config().await;
        let env = |name: &str| std::env::var(name).unwrap_or_default();
        // The tables as configuration reads them (the same parser, the same names), so that
        // the store can read the published keys while the secrets are read.
        let tables = Tables::from_lookup(|name| std::env::var(name).ok()).inspect_err(|err| {
            tracing::error!(error = %err, "refusing to start: invalid configuration");
        })?;
        let client = aws_sdk_dynamodb::Client::new(&sdk);
        let store = DynamoStore::new(client, tables.users, tables.tokens)
            .with_sessions_table(tables.sessions);
        // Deployed, the secrets come from Secrets Manager; they and the published keys are read
        // side by side. While the refresh-token key rotates (`JWT_SECRET_ACCEPT_PREVIOUS=true`),
        // its previous value verifies too.
        let accept_previous = env(var::JWT_SECRET_ACCEPT_PREVIOUS) == "true";
        let keys = needs.keys;
        let published = async {
            match keys {
                KeysNeeded::Verify => Some(store.published_keys().await),
                _ => None,
            }
        };
        let (hash_key, refresh, previous_refresh, mfa_key, key_document, published) = tokio::join!(
            read_secret(&sdk, var::HASH_KEY_SECRET_ID, CURRENT, "the hash key", true),
            read_secret(
                &sdk,
                var::JWT_SECRET_ID,
                CURRENT,
                "the refresh-token key",
                needs.refresh
            ),
            read_secret(
                &sdk,
                var::JWT_SECRET_ID,
                PREVIOUS,
                "the previous refresh-token key",
                needs.refresh && accept_previous
            ),
            read_secret(
                &sdk,
                var::MFA_KEY_SECRET_ID,
                CURRENT,
                "the MFA key",
                needs.mfa
            ),
            read_secret(
                &sdk,
                var::SIGNING_KEYS_SECRET_ID,
                CURRENT,
                "the signing keys",
                keys == KeysNeeded::Sign
            ),
            published,
        );
        let secrets = Secrets {
            hash_key: hash_key?.ok_or_else(|| missing(var::HASH_KEY_SECRET_ID))?,
            refresh: refresh?,
            previous_refresh: previous_refresh?,
            mfa_key: mfa_key?,
        };
        if needs.refresh && secrets.refresh.is_none() {
            return Err(missing(var::JWT_SECRET_ID));
        }

        let config = config_with_secrets(secrets)?;
        let access = access_keys(keys, key_document, published)?;
        if needs.mfa && config.mfa.key.is_none() {
            return Err(missing(var::MFA_KEY_SECRET_ID));
        }
        let source = key_source(keys, &sdk);
        Ok((
            Self::new(config, store, access).with_key_source(source),
            sdk,
        ))
    }
}

/// Where a function that needs `keys` reads them again while warm.
fn key_source(keys: KeysNeeded, sdk: &aws_config::SdkConfig) -> KeySource {
    match keys {
        KeysNeeded::None => KeySource::Fixed,
        KeysNeeded::Verify => KeySource::Published,
        KeysNeeded::Sign => KeySource::Document(Arc::new(SigningKeysSecret {
            sdk: sdk.clone(),
            secret_id: std::env::var(var::SIGNING_KEYS_SECRET_ID).unwrap_or_default(),
        })),
    }
}

/// The signing keys' secret, where a signer reads the key document again.
struct SigningKeysSecret {
    sdk: aws_config::SdkConfig,
    secret_id: String,
}

impl DocumentSource for SigningKeysSecret {
    fn read(&self) -> DocumentFuture<'_> {
        Box::pin(async {
            crate::aws::secret_string(&self.sdk, &self.secret_id, CURRENT)
                .await
                .map(|document| document.expose_secret().to_owned())
        })
    }
}

/// The secret values a function read at start, each for one purpose.
struct Secrets {
    hash_key: SecretString,
    refresh: Option<SecretString>,
    previous_refresh: Option<SecretString>,
    mfa_key: Option<SecretString>,
}

/// The configuration from the environment, with the secret values read from Secrets Manager:
/// never from the environment.
fn config_with_secrets(secrets: Secrets) -> Result<Config, ConfigError> {
    Config::from_lookup(|name| {
        let from_secret = match name {
            "HASH_KEY" => Some(&secrets.hash_key),
            "JWT_SECRET" => secrets.refresh.as_ref(),
            "JWT_SECRET_PREVIOUS" => secrets.previous_refresh.as_ref(),
            "MFA_KEY" => secrets.mfa_key.as_ref(),
            _ if functions::SECRET_VALUES.contains(&name) => None,
            _ => return std::env::var(name).ok(),
        };
        from_secret.map(|secret| secret.expose_secret().to_owned())
    })
    .inspect_err(|err| {
        tracing::error!(error = %err, "refusing to start: invalid configuration");
    })
}

/// The access-token keys a function needs: the signing keys from their secret, the published
/// public keys, or none.
fn access_keys(
    keys: KeysNeeded,
    key_document: Result<Option<SecretString>, ConfigError>,
    published: Option<Result<Option<PublicKeys>, StoreError>>,
) -> Result<AccessKeys, ConfigError> {
    match (keys, published) {
        (KeysNeeded::Sign, _) => {
            let document = key_document?.ok_or_else(|| missing(var::SIGNING_KEYS_SECRET_ID))?;
            KeyDocument::parse(document.expose_secret())
                .and_then(|document| AccessKeys::signing(&document))
                .map_err(|err| unreadable("the signing keys", err.to_string()))
        }
        (KeysNeeded::Verify, Some(Ok(Some(public)))) => Ok(AccessKeys::verifying(&public)),
        (KeysNeeded::Verify, Some(Err(err))) => Err(unreadable("the public keys", err.to_string())),
        (KeysNeeded::Verify, _) => Err(unreadable("the public keys", "none published yet".into())),
        (KeysNeeded::None, _) => Ok(AccessKeys::none()),
    }
}

const CURRENT: &str = "AWSCURRENT";
const PREVIOUS: &str = "AWSPREVIOUS";

/// The secret named by the variable `id_var` at `stage`, when the variable is set (and the
/// secret `wanted`).
async fn read_secret(
    sdk: &aws_config::SdkConfig,
    id_var: &'static str,
    stage: &str,
    what: &'static str,
    wanted: bool,
) -> Result<Option<SecretString>, ConfigError> {
    let Some(id) = std::env::var(id_var)
        .ok()
        .filter(|id| wanted && !id.is_empty())
    else {
        return Ok(None);
    };
    crate::aws::secret_string(sdk, &id, stage)
        .await
        .map(Some)
        .map_err(|reason| unreadable(what, reason))
}

fn missing(var: &'static str) -> ConfigError {
    tracing::error!("refusing to start: {var} is not set");
    ConfigError::Missing(var)
}

fn unreadable(what: &'static str, reason: String) -> ConfigError {
    let err = ConfigError::Unreadable { what, reason };
    tracing::error!(error = %err, "refusing to start");
    err
}

/// The mailer of functions that send no mail.
struct NoMailer;

impl Mailer for NoMailer {
    fn send<'a>(&'a self, _mail: &'a Mail) -> SendFuture<'a> {
        Box::pin(async { Err(MailError("this function sends no mail".into())) })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::handlers::me;
    use crate::jwt::TokenUse;
    use crate::testing::{self, ManualClock, authed, key_document};

    /// A key document source whose answer the test sets.
    struct Settable(Mutex<Result<String, String>>);

    impl DocumentSource for Settable {
        fn read(&self) -> DocumentFuture<'_> {
            let answer = self.0.lock().expect("lock").clone();
            Box::pin(async move { answer })
        }
    }

    fn max_age() -> Duration {
        testing::config().tokens.keys_max_age
    }

    #[tokio::test]
    async fn a_warm_verifier_drops_a_delisted_key_once_its_copy_is_stale() {
        let clock = Arc::new(ManualClock::new());
        let deps = testing::deps()
            .with_clock(clock.clone())
            .with_key_source(KeySource::Published);
        let tokens = testing::alice(&deps).await;
        let me = |deps| me::handle(deps, authed("GET", "/auth/me", &tokens, None));
        assert_eq!(me(&deps).await.expect("ok").status(), 200);
        // The signing key is delisted (an operator's answer to a leak): only other keys remain.
        let other = KeyDocument::genesis("http://127.0.0.1:9000", 0).expect("keys");
        let published = other.public().expect("public");
        deps.store
            .publish_keys(&published)
            .await
            .expect("published");
        clock.advance(time::Duration::seconds(max_age().as_secs() as i64 - 1));
        assert_eq!(
            me(&deps).await.expect("ok").status(),
            200,
            "its copy is fresh"
        );
        clock.advance(time::Duration::seconds(1));
        assert_eq!(
            me(&deps).await.expect("ok").status(),
            401,
            "read again: delisted"
        );
    }

    #[tokio::test]
    async fn a_warm_signer_follows_the_promoted_key_and_keeps_its_keys_while_unreadable() {
        let clock = Arc::new(ManualClock::new());
        let source = Arc::new(Settable(Mutex::new(Err("unavailable".into()))));
        let deps = testing::deps()
            .with_clock(clock.clone())
            .with_key_source(KeySource::Document(source.clone()));
        let kid = |deps: &Deps<_>| deps.tokens().kid(TokenUse::Access).map(str::to_owned);
        let first = kid(&deps);
        assert_eq!(first.as_deref(), Some(key_document().current.kid.as_str()));
        let step = |secs: u64| clock.advance(time::Duration::seconds(secs as i64));

        step(max_age().as_secs());
        deps.keep_keys_fresh().await;
        assert_eq!(kid(&deps), first, "a failed read keeps the keys in use");

        let rules = crate::rotation::rules(Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let promoted = key_document()
            .rotated("http://127.0.0.1:9000", deps.now(), rules)
            .expect("keys")
            .expect("allowed");
        *source.0.lock().expect("lock") = Ok(promoted.to_json());
        step(max_age().as_secs() - 1);
        deps.keep_keys_fresh().await;
        assert_eq!(kid(&deps), first, "not read again before the copy is stale");
        step(1);
        deps.keep_keys_fresh().await;
        assert_eq!(kid(&deps).as_deref(), Some(promoted.current.kid.as_str()));
        assert_eq!(promoted.current.kid, key_document().next.kid);
    }

    #[tokio::test]
    async fn only_an_endpoint_of_the_list_starts_as_one() {
        for name in ["jwks", "rotate-keys", "no-such-function"] {
            let refused = Deps::for_function(name).await.err();
            assert_eq!(refused, Some(ConfigError::UnknownFunction(name.into())));
        }
    }
}
