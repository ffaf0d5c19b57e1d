//! Configuration, read once per cold start from the environment (the README's "Configuration"
//! table; docs/requirements.md, "Other rules").

use std::collections::BTreeSet;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

/// The shortest secret accepted (`HASH_KEY`, `JWT_SECRET`): 32 bytes (256 bits), HS256's key.
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{var} is invalid: {reason}")]
    Invalid { var: &'static str, reason: String },
    /// A binary that [`crate::handlers::registry`] does not list as an endpoint.
    #[error("{0} is not an endpoint function")]
    UnknownFunction(String),
    /// A secret or key document named by the configuration could not be read.
    #[error("{what} could not be read: {reason}")]
    Unreadable { what: &'static str, reason: String },
}

/// The `SameSite` attribute of the token cookies (`COOKIE_SAMESITE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

impl SameSite {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "strict" => Some(Self::Strict),
            "lax" => Some(Self::Lax),
            "none" => Some(Self::None),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "Strict",
            Self::Lax => "Lax",
            Self::None => "None",
        }
    }
}

/// The whole configuration, in groups: where a new setting goes is the group it belongs to.
#[derive(Debug, Clone)]
pub struct Config {
    pub tables: Tables,
    /// `HASH_KEY`: the key of the keyed hashes of mailed codes and client addresses (its own
    /// secret, so that the functions that only hash never hold a key that signs).
    pub hash_key: SecretString,
    pub tokens: TokenSettings,
    pub sessions: SessionSettings,
    pub codes: CodeSettings,
    pub cookies: CookieSettings,
    pub limits: LimitSettings,
    pub mail: MailSettings,
    pub mfa: MfaSettings,
}

/// The DynamoDB tables (`USERS_TABLE`, `TOKENS_TABLE`, `SESSIONS_TABLE`).
#[derive(Debug, Clone)]
pub struct Tables {
    pub users: String,
    pub tokens: String,
    pub sessions: String,
}

/// Token signing and lifetimes.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// `JWT_SECRET`, the refresh-token key: only the functions that issue or spend refresh
    /// tokens hold it (`Needs::refresh` in [`crate::functions`]).
    pub refresh_secret: Option<SecretString>,
    /// The refresh-token key before the last rotation: it verifies, never signs.
    pub previous_refresh_secret: Option<SecretString>,
    /// `JWT_ISSUER`; when unset, the issuer named by the key document (written at deploy time,
    /// when the API's URL is known).
    pub issuer: Option<String>,
    pub audience: String,
    /// The `scope` claim of access tokens (`ACCESS_TOKEN_SCOPE`).
    pub scope: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    /// How long a function keeps its copy of the access-token keys before reading them again
    /// (`PUBLIC_KEYS_MAX_AGE_SECONDS`, as the JWKS function; see [`crate::key_ring`]).
    pub keys_max_age: Duration,
}

/// How long a session lives unused, and the grace for a spent refresh token.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub idle_timeout: Duration,
    pub reuse_interval: Duration,
    /// Sign-in (and the session registration starts) only for verified addresses.
    pub require_verified_email: bool,
}

/// Mailed codes.
#[derive(Debug, Clone)]
pub struct CodeSettings {
    pub reset_ttl: Duration,
    /// Wrong tries of one code from one client address, reset and verification codes alike.
    pub reset_max_attempts: u32,
    /// Tries of one code from all client addresses together: the code dies after them,
    /// whatever their origin (FP-09).
    pub max_attempts_total: u32,
    pub email_ttl: Duration,
}

/// Cookie mode: which origins may use it, and the cookies' `SameSite`.
#[derive(Debug, Clone)]
pub struct CookieSettings {
    pub allowed_origins: BTreeSet<String>,
    pub same_site: SameSite,
}

/// Lockouts and rate limits.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    pub lockout_threshold: u32,
    /// Failed logins one client address may make per `client_window`.
    pub login_client_limit: u32,
    /// Answers that reveal something (registration conflicts, wrong codes) one client address
    /// may get per `client_window`, for each kind.
    pub probe_client_limit: u32,
    /// Forgot-password requests one client address may make per `client_window`.
    pub forgot_client_limit: u32,
    pub client_window: Duration,
    /// At most one reset mail per address in this interval...
    pub forgot_address_interval: Duration,
    /// ...and at most this many per address and hour.
    pub forgot_address_hourly_limit: u32,
    /// Forgot-password answers take at least this long, whether or not a mail was sent.
    pub forgot_min_response: Duration,
}

/// Two-step sign-in: the key that seals TOTP secrets and keys recovery codes (`MFA_KEY`, read
/// from its own secret by the functions that need it), and the issuer name authenticator apps
/// show (`MFA_ISSUER`).
#[derive(Debug, Clone)]
pub struct MfaSettings {
    pub key: Option<SecretString>,
    pub issuer: String,
}

/// Mail: the sender, and an optional link template for reset mail.
#[derive(Debug, Clone)]
pub struct MailSettings {
    pub from: Option<String>,
    pub reset_url_template: Option<String>,
    /// `MAIL_CONFIGURATION_SET`: the SES configuration set every mail goes through (bounce and
    /// complaint suppression, their metrics).
    pub configuration_set: Option<String>,
}

impl Config {
    /// Reads configuration through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let cookies = CookieSettings::from_env(&env)?;
        if cookies.same_site == SameSite::None && cookies.allowed_origins.is_empty() {
            return Err(ConfigError::Invalid {
                var: "COOKIE_SAMESITE",
                reason: "None needs ALLOWED_ORIGINS, or every cross-site request would carry the cookies"
                    .into(),
            });
        }
        Ok(Self {
            tables: Tables::from_env(&env)?,
            hash_key: checked_secret("HASH_KEY", env.required("HASH_KEY")?)?,
            tokens: TokenSettings::from_env(&env)?,
            sessions: SessionSettings {
                idle_timeout: env.seconds("SESSION_IDLE_TIMEOUT_SECONDS", 86_400, 1)?,
                reuse_interval: env.seconds("REFRESH_REUSE_INTERVAL_SECONDS", 10, 0)?,
                require_verified_email: env.flag("REQUIRE_VERIFIED_EMAIL")?,
            },
            codes: CodeSettings {
                reset_ttl: env.seconds("RESET_CODE_TTL_SECONDS", 600, 1)?,
                reset_max_attempts: env.count("RESET_CODE_MAX_ATTEMPTS", 5)?,
                max_attempts_total: env.count("CODE_MAX_ATTEMPTS_TOTAL", 20)?,
                email_ttl: env.seconds("EMAIL_CODE_TTL_SECONDS", 86_400, 1)?,
            },
            cookies,
            limits: LimitSettings {
                lockout_threshold: env.count("LOGIN_LOCKOUT_THRESHOLD", 5)?,
                login_client_limit: env.count("LOGIN_CLIENT_LIMIT", 100)?,
                forgot_client_limit: env.count("FORGOT_CLIENT_LIMIT", 30)?,
                probe_client_limit: env.count("PROBE_CLIENT_LIMIT", 20)?,
                client_window: env.seconds("CLIENT_LIMIT_WINDOW_SECONDS", 300, 1)?,
                forgot_address_interval: env.seconds("FORGOT_ADDRESS_INTERVAL_SECONDS", 60, 0)?,
                forgot_address_hourly_limit: env.count("FORGOT_ADDRESS_HOURLY_LIMIT", 5)?,
                forgot_min_response: env.millis("FORGOT_MIN_RESPONSE_MS", 300)?,
            },
            mail: MailSettings::from_env(&env)?,
            mfa: MfaSettings {
                key: env
                    .get("MFA_KEY")
                    .map(|value| checked_secret("MFA_KEY", value))
                    .transpose()?,
                issuer: env.get("MFA_ISSUER").unwrap_or_else(|| "Auth".into()),
            },
        })
    }

    /// A hashing key for one purpose, derived from `HASH_KEY` (see
    /// [`crate::crypto::derive_key`]).
    pub fn derived_key(&self, label: &[u8]) -> [u8; 32] {
        crate::crypto::derive_key(self.hash_key.expose_secret().as_bytes(), label)
    }
}

/// How long discovery and the JWKS keep their copy of the published keys, and clients their
/// answers, unless `PUBLIC_KEYS_MAX_AGE_SECONDS` says otherwise.
pub const PUBLIC_KEYS_REFRESH: Duration = Duration::from_secs(300);

/// What discovery and the JWKS read: nothing secret.
#[derive(Debug, Clone)]
pub struct PublicKeySettings {
    /// Where the keys are published (`USERS_TABLE`).
    pub users_table: String,
    /// `JWT_ISSUER` when set; else the issuer the published keys name.
    pub issuer: Option<String>,
    pub max_age: Duration,
}

impl PublicKeySettings {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        Ok(Self {
            users_table: env.required("USERS_TABLE")?,
            issuer: env.get("JWT_ISSUER"),
            max_age: env.seconds(
                "PUBLIC_KEYS_MAX_AGE_SECONDS",
                PUBLIC_KEYS_REFRESH.as_secs(),
                0,
            )?,
        })
    }
}

/// What the signing keys' rotation function reads: where the public halves are published, the
/// issuer it writes beside the keys (required: the deployment passes the API's URL or the
/// custom domain), how long a new key is listed before it signs (API Gateway's key cache by
/// default) and how long access tokens live.
#[derive(Debug, Clone)]
pub struct KeyRotationSettings {
    pub users_table: String,
    pub issuer: String,
    pub listed_before_signing: Duration,
    pub access_ttl: Duration,
    /// How long verifiers, signers and the JWKS's clients keep a copy of the keys
    /// (`PUBLIC_KEYS_MAX_AGE_SECONDS`).
    pub keys_max_age: Duration,
}

/// The margin a new key is listed beyond the caches it must outlive: the rotation writes its
/// publication seconds after it makes the key, and a retried step later still.
pub const LISTING_MARGIN: Duration = Duration::from_secs(300);

impl KeyRotationSettings {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let keys_max_age = env.seconds(
            "PUBLIC_KEYS_MAX_AGE_SECONDS",
            PUBLIC_KEYS_REFRESH.as_secs(),
            0,
        )?;
        // Before a key signs, every copy of the key set must have been read again since it
        // was listed. The longest chain: the JWKS function's copy (max-age), an HTTP cache in
        // front of it (the answer's max-age), API Gateway's authorizer (2 hours); then a
        // margin. (Warm verifiers and the JWKS's other clients keep theirs for max-age.)
        let listed_default =
            crate::signing::API_GATEWAY_KEY_CACHE + keys_max_age + keys_max_age + LISTING_MARGIN;
        Ok(Self {
            users_table: env.required("USERS_TABLE")?,
            issuer: env.required("JWT_ISSUER")?,
            listed_before_signing: env.seconds(
                "KEY_LISTED_BEFORE_SIGNING_SECONDS",
                listed_default.as_secs(),
                0,
            )?,
            access_ttl: env.seconds("ACCESS_TOKEN_TTL_SECONDS", 600, 1)?,
            keys_max_age,
        })
    }
}

impl Tables {
    /// The three table names, each required: what the store is built from before the rest of
    /// the configuration (whose secrets are read beside the store's first call).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::from_env(&Env(&lookup))
    }

    fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            users: env.required("USERS_TABLE")?,
            tokens: env.required("TOKENS_TABLE")?,
            sessions: env.required("SESSIONS_TABLE")?,
        })
    }
}

impl TokenSettings {
    fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            refresh_secret: env
                .get("JWT_SECRET")
                .map(|value| checked_secret("JWT_SECRET", value))
                .transpose()?,
            previous_refresh_secret: env
                .get("JWT_SECRET_PREVIOUS")
                .map(|value| checked_secret("JWT_SECRET_PREVIOUS", value))
                .transpose()?,
            issuer: env.get("JWT_ISSUER"),
            audience: env.get("JWT_AUDIENCE").unwrap_or_else(|| "auth".into()),
            scope: parse_scope(env.get("ACCESS_TOKEN_SCOPE"))?,
            access_ttl: env.seconds("ACCESS_TOKEN_TTL_SECONDS", 600, 1)?,
            refresh_ttl: env.seconds("REFRESH_TOKEN_TTL_SECONDS", 604_800, 1)?,
            keys_max_age: env.seconds(
                "PUBLIC_KEYS_MAX_AGE_SECONDS",
                PUBLIC_KEYS_REFRESH.as_secs(),
                0,
            )?,
        })
    }
}

impl CookieSettings {
    fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let allowed_origins = env
            .get("ALLOWED_ORIGINS")
            .map(|raw| parse_origins(&raw))
            .transpose()?
            .unwrap_or_default();
        let same_site = match env.get("COOKIE_SAMESITE").as_deref() {
            None => SameSite::Strict,
            Some(raw) => SameSite::parse(raw).ok_or(ConfigError::Invalid {
                var: "COOKIE_SAMESITE",
                reason: "expected Strict, Lax or None".into(),
            })?,
        };
        Ok(Self {
            allowed_origins,
            same_site,
        })
    }
}

impl MailSettings {
    fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let reset_url_template = env.get("RESET_URL_TEMPLATE");
        if let Some(template) = &reset_url_template {
            let local = ["http://localhost", "http://127.0.0.1"]
                .iter()
                .any(|p| template.starts_with(p));
            if !template.starts_with("https://") && !local {
                return Err(ConfigError::Invalid {
                    var: "RESET_URL_TEMPLATE",
                    reason: "links in mail must be https:// (FP-08)".into(),
                });
            }
        }
        Ok(Self {
            from: env.get("MAIL_FROM"),
            reset_url_template,
            configuration_set: env.get("MAIL_CONFIGURATION_SET"),
        })
    }
}

/// The environment as configuration reads it: trimmed values, empty as unset, and the parsers
/// every group shares.
struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.get(name).ok_or(ConfigError::Missing(name))
    }

    fn seconds(&self, name: &'static str, default: u64, min: u64) -> Result<Duration, ConfigError> {
        match self.get(name) {
            None => Ok(Duration::from_secs(default)),
            Some(raw) => match raw.parse::<u64>() {
                Ok(n) if n >= min => Ok(Duration::from_secs(n)),
                _ => Err(ConfigError::Invalid {
                    var: name,
                    reason: format!("expected a whole number of seconds, at least {min}"),
                }),
            },
        }
    }

    fn millis(&self, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
        let ms = match self.get(name) {
            None => default,
            Some(raw) => raw.parse::<u64>().map_err(|_| ConfigError::Invalid {
                var: name,
                reason: "expected a whole number of milliseconds".into(),
            })?,
        };
        Ok(Duration::from_millis(ms))
    }

    fn count(&self, name: &'static str, default: u32) -> Result<u32, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(ConfigError::Invalid {
                    var: name,
                    reason: "expected a positive whole number".into(),
                }),
        }
    }

    fn flag(&self, name: &'static str) -> Result<bool, ConfigError> {
        match self.get(name).as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(ConfigError::Invalid {
                var: name,
                reason: "expected true or false".into(),
            }),
        }
    }
}

/// `value` as the secret `var`, when it is strong enough (see [`check_secret_strength`]).
fn checked_secret(var: &'static str, value: String) -> Result<SecretString, ConfigError> {
    check_secret_strength(&value)
        .map(|()| SecretString::from(value))
        .map_err(|reason| ConfigError::Invalid {
            var,
            reason: reason.into(),
        })
}

/// Refuses secrets that are short or obviously not random (a repeated character, a word
/// typed a few times). It cannot prove randomness; it stops the common mistakes.
fn check_secret_strength(secret: &str) -> Result<(), &'static str> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err("must be at least 32 bytes of random data (e.g. `openssl rand -base64 48`)");
    }
    let distinct: BTreeSet<u8> = secret.bytes().collect();
    if distinct.len() < 12 {
        return Err("looks like a placeholder, not random data");
    }
    Ok(())
}

/// The default `scope` of access tokens: what the example protected API requires.
pub const DEFAULT_SCOPE: &str = "api";

/// A `scope` claim (RFC 6749, section 3.3): space-separated tokens of printable ASCII other than
/// `"` and `\`.
fn parse_scope(raw: Option<String>) -> Result<String, ConfigError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_SCOPE.to_owned());
    };
    let valid = raw.split(' ').all(|token| {
        !token.is_empty()
            && token
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    });
    if valid {
        Ok(raw)
    } else {
        Err(ConfigError::Invalid {
            var: "ACCESS_TOKEN_SCOPE",
            reason: "expected scope tokens separated by single spaces".into(),
        })
    }
}

fn parse_origins(raw: &str) -> Result<BTreeSet<String>, ConfigError> {
    raw.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|origin| {
            let valid = (origin.starts_with("https://") || origin.starts_with("http://"))
                && !origin.ends_with('/')
                && origin != "*"
                && !origin.contains(char::is_whitespace);
            if valid {
                Ok(origin.to_owned())
            } else {
                Err(ConfigError::Invalid {
                    var: "ALLOWED_ORIGINS",
                    reason: format!("`{origin}` is not an origin like https://app.example.com"),
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn public_key_settings_need_the_table_and_default_the_rest() {
        assert_eq!(
            PublicKeySettings::from_lookup(lookup(&[])).err(),
            Some(ConfigError::Missing("USERS_TABLE"))
        );
        let settings =
            PublicKeySettings::from_lookup(lookup(&[("USERS_TABLE", "users")])).expect("settings");
        assert_eq!(settings.users_table, "users");
        assert_eq!(settings.issuer, None);
        assert_eq!(settings.max_age, PUBLIC_KEYS_REFRESH);
        let bad = [
            ("USERS_TABLE", "users"),
            ("PUBLIC_KEYS_MAX_AGE_SECONDS", "soon"),
        ];
        assert!(PublicKeySettings::from_lookup(lookup(&bad)).is_err());
    }

    #[test]
    fn the_rotation_needs_its_issuer_and_may_list_keys_at_once() {
        let no_issuer = [("USERS_TABLE", "users"), ("JWT_ISSUER", " ")];
        assert_eq!(
            KeyRotationSettings::from_lookup(lookup(&no_issuer)).err(),
            Some(ConfigError::Missing("JWT_ISSUER"))
        );
        let given = [
            ("USERS_TABLE", "users"),
            ("JWT_ISSUER", "https://auth.example.com"),
            ("KEY_LISTED_BEFORE_SIGNING_SECONDS", "0"),
        ];
        let settings = KeyRotationSettings::from_lookup(lookup(&given)).expect("settings");
        assert_eq!(settings.issuer, "https://auth.example.com");
        assert_eq!(settings.listed_before_signing, Duration::ZERO);
        assert_eq!(settings.access_ttl, Duration::from_secs(600));
        let defaults = &given[..2];
        let settings = KeyRotationSettings::from_lookup(lookup(defaults)).expect("settings");
        assert_eq!(
            settings.listed_before_signing,
            crate::signing::API_GATEWAY_KEY_CACHE + Duration::from_secs(300 + 300) + LISTING_MARGIN,
            "API Gateway's cache, behind the JWKS function's copy, the JWKS's max-age, a margin"
        );
        assert_eq!(settings.keys_max_age, PUBLIC_KEYS_REFRESH);
    }
    use std::collections::HashMap;

    const SECRET: &str = "k3Jd9-fQ2mXz7LpR4vT8wYbN6cHs1aGe";

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut env: HashMap<String, String> = [
            ("USERS_TABLE", "users"),
            ("TOKENS_TABLE", "tokens"),
            ("SESSIONS_TABLE", "sessions"),
            ("HASH_KEY", SECRET),
            ("JWT_SECRET", SECRET),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (k, v) in vars {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        Config::from_lookup(|name| env.get(name).cloned())
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = config(&[]).expect("valid config");
        assert_eq!(c.tokens.access_ttl, Duration::from_secs(600));
        assert_eq!(c.tokens.refresh_ttl, Duration::from_secs(604_800));
        assert_eq!(c.sessions.idle_timeout, Duration::from_secs(86_400));
        assert_eq!(c.sessions.reuse_interval, Duration::from_secs(10));
        assert_eq!(c.codes.reset_ttl, Duration::from_secs(600));
        assert_eq!(c.codes.reset_max_attempts, 5);
        assert_eq!(c.codes.max_attempts_total, 20);
        assert_eq!(c.codes.email_ttl, Duration::from_secs(86_400));
        assert!(!c.sessions.require_verified_email);
        assert_eq!(c.limits.lockout_threshold, 5);
        assert_eq!(
            (c.limits.login_client_limit, c.limits.forgot_client_limit),
            (100, 30)
        );
        assert_eq!(c.limits.client_window, Duration::from_secs(300));
        assert_eq!(c.limits.forgot_address_interval, Duration::from_secs(60));
        assert_eq!(c.limits.forgot_address_hourly_limit, 5);
        assert_eq!(c.cookies.same_site, SameSite::Strict);
        assert_eq!(c.tokens.audience, "auth");
        assert!(c.cookies.allowed_origins.is_empty());
    }

    #[test]
    fn missing_secret_stops_start() {
        let err = Config::from_lookup(|name| match name {
            "USERS_TABLE" | "TOKENS_TABLE" | "SESSIONS_TABLE" => Some("t".into()),
            _ => None,
        })
        .expect_err("no secret");
        assert_eq!(err, ConfigError::Missing("HASH_KEY"));
    }

    #[test]
    fn the_refresh_token_key_is_optional_and_the_hash_key_is_not_derived_from_it() {
        let without = Config::from_lookup(|name| match name {
            "USERS_TABLE" | "TOKENS_TABLE" | "SESSIONS_TABLE" => Some("t".into()),
            "HASH_KEY" => Some(SECRET.into()),
            _ => None,
        })
        .expect("a function that holds no refresh-token key starts");
        assert!(without.tokens.refresh_secret.is_none());
        let with_other_refresh_key =
            config(&[("JWT_SECRET", "another-refresh-key-of-32-bytes-or-more")]).expect("valid");
        assert_eq!(
            without.derived_key(b"throttle"),
            with_other_refresh_key.derived_key(b"throttle"),
            "hashes depend on the hash key alone"
        );
        let other_hash =
            config(&[("HASH_KEY", "another-hash-key-of-32-bytes-or-more!")]).expect("valid");
        assert_ne!(
            without.derived_key(b"throttle"),
            other_hash.derived_key(b"throttle")
        );
    }

    #[test]
    fn weak_secrets_are_refused() {
        // JWT-05: at least 256 bits, not a password.
        for weak in [
            "short",
            &"a".repeat(64),
            &"changeme".repeat(4),
            &"0123456789".repeat(4),
        ] {
            for var in ["HASH_KEY", "JWT_SECRET"] {
                let err = config(&[(var, weak)]).expect_err(weak);
                assert!(
                    matches!(err, ConfigError::Invalid { var: named, .. } if named == var),
                    "{var} {weak}: {err}"
                );
                assert!(
                    !err.to_string().contains(weak),
                    "the error must not echo the secret"
                );
            }
        }
    }

    #[test]
    fn overrides_and_bad_values() {
        let c = config(&[
            ("ACCESS_TOKEN_TTL_SECONDS", "60"),
            ("REFRESH_REUSE_INTERVAL_SECONDS", "0"),
            (
                "ALLOWED_ORIGINS",
                "http://localhost:3000, https://app.example.com",
            ),
            ("COOKIE_SAMESITE", "lax"),
        ])
        .expect("valid");
        assert_eq!(c.tokens.access_ttl, Duration::from_secs(60));
        assert_eq!(c.sessions.reuse_interval, Duration::ZERO);
        assert_eq!(c.cookies.same_site, SameSite::Lax);
        assert!(
            c.cookies
                .allowed_origins
                .contains("https://app.example.com")
        );

        assert!(config(&[("ACCESS_TOKEN_TTL_SECONDS", "0")]).is_err());
        assert!(config(&[("ACCESS_TOKEN_TTL_SECONDS", "ten")]).is_err());
        assert!(config(&[("ALLOWED_ORIGINS", "*")]).is_err());
        assert!(config(&[("ALLOWED_ORIGINS", "https://app.example.com/")]).is_err());
        assert!(
            config(&[("COOKIE_SAMESITE", "None")]).is_err(),
            "None without origins"
        );
        assert!(config(&[("LOGIN_LOCKOUT_THRESHOLD", "0")]).is_err());
        assert!(config(&[("RESET_URL_TEMPLATE", "http://app.example.com/r?c={code}")]).is_err());
        assert!(config(&[("RESET_URL_TEMPLATE", "https://app.example.com/r?c={code}")]).is_ok());
        let strict = config(&[("REQUIRE_VERIFIED_EMAIL", "true")]).expect("valid");
        assert!(strict.sessions.require_verified_email);
        assert!(config(&[("REQUIRE_VERIFIED_EMAIL", "yes")]).is_err());
    }
}
