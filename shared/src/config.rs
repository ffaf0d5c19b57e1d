//! Configuration, read once per cold start from the environment (API.md, "Configuration").

use std::collections::BTreeSet;

use secrecy::{ExposeSecret, SecretString};
use time::Duration;

use crate::http::SameSite;

/// The shortest `JWT_SECRET` accepted: 32 bytes (256 bits) for HS256.
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{var} is invalid: {reason}")]
    Invalid { var: &'static str, reason: String },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub users_table: String,
    pub tokens_table: String,
    pub jwt_secret: SecretString,
    /// The secret before the last rotation: it verifies, never signs.
    pub jwt_previous_secret: Option<SecretString>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub session_idle_timeout: Duration,
    pub refresh_reuse_interval: Duration,
    pub reset_code_ttl: Duration,
    pub reset_code_max_attempts: u32,
    pub mail_from: Option<String>,
    pub reset_url_template: Option<String>,
    pub allowed_origins: BTreeSet<String>,
    pub cookie_same_site: SameSite,
    pub login_lockout_threshold: u32,
    /// Failed logins one client address may make per `client_limit_window`.
    pub login_client_limit: u32,
    /// Forgot-password requests one client address may make per `client_limit_window`.
    pub forgot_client_limit: u32,
    pub client_limit_window: Duration,
    /// At most one reset mail per address in this interval...
    pub forgot_address_interval: Duration,
    /// ...and at most this many per address and hour.
    pub forgot_address_hourly_limit: u32,
    /// Forgot-password answers take at least this long, whether or not a mail was sent.
    pub forgot_min_response: std::time::Duration,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let required = |name: &'static str| get(name).ok_or(ConfigError::Missing(name));
        let seconds =
            |name: &'static str, default: i64, min: i64| -> Result<Duration, ConfigError> {
                match get(name) {
                    None => Ok(Duration::seconds(default)),
                    Some(raw) => match raw.parse::<i64>() {
                        Ok(n) if n >= min => Ok(Duration::seconds(n)),
                        _ => Err(ConfigError::Invalid {
                            var: name,
                            reason: format!("expected a whole number of seconds, at least {min}"),
                        }),
                    },
                }
            };
        let millis =
            |name: &'static str, default: u64| -> Result<std::time::Duration, ConfigError> {
                let ms = match get(name) {
                    None => default,
                    Some(raw) => raw.parse::<u64>().map_err(|_| ConfigError::Invalid {
                        var: name,
                        reason: "expected a whole number of milliseconds".into(),
                    })?,
                };
                Ok(std::time::Duration::from_millis(ms))
            };
        let count = |name: &'static str, default: u32| -> Result<u32, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(raw) => {
                    raw.parse::<u32>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or(ConfigError::Invalid {
                            var: name,
                            reason: "expected a positive whole number".into(),
                        })
                }
            }
        };

        let jwt_secret = SecretString::from(required("JWT_SECRET")?);
        check_secret_strength(jwt_secret.expose_secret()).map_err(|reason| {
            ConfigError::Invalid {
                var: "JWT_SECRET",
                reason: reason.into(),
            }
        })?;

        let jwt_previous_secret = get("JWT_SECRET_PREVIOUS").map(SecretString::from);
        if let Some(previous) = &jwt_previous_secret {
            check_secret_strength(previous.expose_secret()).map_err(|reason| {
                ConfigError::Invalid {
                    var: "JWT_SECRET_PREVIOUS",
                    reason: reason.into(),
                }
            })?;
        }

        let allowed_origins = get("ALLOWED_ORIGINS")
            .map(|raw| parse_origins(&raw))
            .transpose()?
            .unwrap_or_default();

        let cookie_same_site = match get("COOKIE_SAMESITE").as_deref() {
            None => SameSite::Strict,
            Some(raw) => SameSite::parse(raw).ok_or(ConfigError::Invalid {
                var: "COOKIE_SAMESITE",
                reason: "expected Strict, Lax or None".into(),
            })?,
        };

        let config = Self {
            users_table: required("USERS_TABLE")?,
            tokens_table: required("TOKENS_TABLE")?,
            jwt_secret,
            jwt_previous_secret,
            jwt_issuer: get("JWT_ISSUER").unwrap_or_else(|| "auth".into()),
            jwt_audience: get("JWT_AUDIENCE").unwrap_or_else(|| "auth".into()),
            access_token_ttl: seconds("ACCESS_TOKEN_TTL_SECONDS", 600, 1)?,
            refresh_token_ttl: seconds("REFRESH_TOKEN_TTL_SECONDS", 604_800, 1)?,
            session_idle_timeout: seconds("SESSION_IDLE_TIMEOUT_SECONDS", 86_400, 1)?,
            refresh_reuse_interval: seconds("REFRESH_REUSE_INTERVAL_SECONDS", 10, 0)?,
            reset_code_ttl: seconds("RESET_CODE_TTL_SECONDS", 600, 1)?,
            reset_code_max_attempts: count("RESET_CODE_MAX_ATTEMPTS", 5)?,
            mail_from: get("MAIL_FROM"),
            reset_url_template: get("RESET_URL_TEMPLATE"),
            allowed_origins,
            cookie_same_site,
            login_lockout_threshold: count("LOGIN_LOCKOUT_THRESHOLD", 5)?,
            login_client_limit: count("LOGIN_CLIENT_LIMIT", 100)?,
            forgot_client_limit: count("FORGOT_CLIENT_LIMIT", 30)?,
            client_limit_window: seconds("CLIENT_LIMIT_WINDOW_SECONDS", 300, 1)?,
            forgot_address_interval: seconds("FORGOT_ADDRESS_INTERVAL_SECONDS", 60, 0)?,
            forgot_address_hourly_limit: count("FORGOT_ADDRESS_HOURLY_LIMIT", 5)?,
            forgot_min_response: millis("FORGOT_MIN_RESPONSE_MS", 300)?,
        };
        if let Some(template) = &config.reset_url_template {
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
        if config.cookie_same_site == SameSite::None && config.allowed_origins.is_empty() {
            return Err(ConfigError::Invalid {
                var: "COOKIE_SAMESITE",
                reason: "None needs ALLOWED_ORIGINS, or every cross-site request would carry the cookies"
                    .into(),
            });
        }
        Ok(config)
    }
}

impl Config {
    /// A key for one purpose, derived from `JWT_SECRET` (see [`crate::crypto::derive_key`]).
    pub fn derived_key(&self, label: &[u8]) -> [u8; 32] {
        crate::crypto::derive_key(self.jwt_secret.expose_secret().as_bytes(), label)
    }
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
    use std::collections::HashMap;

    const SECRET: &str = "k3Jd9-fQ2mXz7LpR4vT8wYbN6cHs1aGe";

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut env: HashMap<String, String> = [
            ("USERS_TABLE", "users"),
            ("TOKENS_TABLE", "tokens"),
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
        assert_eq!(c.access_token_ttl, Duration::seconds(600));
        assert_eq!(c.refresh_token_ttl, Duration::seconds(604_800));
        assert_eq!(c.session_idle_timeout, Duration::seconds(86_400));
        assert_eq!(c.refresh_reuse_interval, Duration::seconds(10));
        assert_eq!(c.reset_code_ttl, Duration::seconds(600));
        assert_eq!(c.reset_code_max_attempts, 5);
        assert_eq!(c.login_lockout_threshold, 5);
        assert_eq!((c.login_client_limit, c.forgot_client_limit), (100, 30));
        assert_eq!(c.client_limit_window, Duration::seconds(300));
        assert_eq!(c.forgot_address_interval, Duration::seconds(60));
        assert_eq!(c.forgot_address_hourly_limit, 5);
        assert_eq!(c.cookie_same_site, SameSite::Strict);
        assert_eq!(c.jwt_audience, "auth");
        assert!(c.allowed_origins.is_empty());
    }

    #[test]
    fn missing_secret_stops_start() {
        let err = Config::from_lookup(|name| match name {
            "USERS_TABLE" | "TOKENS_TABLE" => Some("t".into()),
            _ => None,
        })
        .expect_err("no secret");
        assert_eq!(err, ConfigError::Missing("JWT_SECRET"));
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
            let err = config(&[("JWT_SECRET", weak)]).expect_err(weak);
            assert!(
                matches!(
                    err,
                    ConfigError::Invalid {
                        var: "JWT_SECRET",
                        ..
                    }
                ),
                "{weak}: {err}"
            );
            assert!(
                !err.to_string().contains(weak),
                "the error must not echo the secret"
            );
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
        assert_eq!(c.access_token_ttl, Duration::seconds(60));
        assert_eq!(c.refresh_reuse_interval, Duration::ZERO);
        assert_eq!(c.cookie_same_site, SameSite::Lax);
        assert!(c.allowed_origins.contains("https://app.example.com"));

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
    }
}
