//! Every function of the service and what it reads from its environment: the one list that the
//! functions start from ([`crate::handlers::Deps::for_function`]) and that the template is
//! checked against (`.ci/check_template.py` reads it through `cargo run --example function-env`).
//!
//! A function's environment has three kinds of variables:
//! - [`Start::variables`]: what the deployment decides for this function (its tables, the ids of
//!   the secrets it reads, the cookie and issuer settings). `template.yaml` must set each of
//!   them for the function, if only to an empty value, or the function refuses to start (or, for
//!   an optional one, silently runs on a default the deployer never chose).
//! - [`TUNING`]: settings with defaults that suit a deployment (token lifetimes, limits). The
//!   template need not set them; a local stack may override them for its tests.
//! - What Lambda itself sets (`AWS_LAMBDA_*`, the region, the credentials): not listed here.
//!
//! Secret values never travel in the environment: a function is given a secret's id and reads
//! the value from Secrets Manager at start. Each secret has one purpose, and only the functions
//! that serve it read it: the hash key (mailed codes' and client addresses' keyed hashes) every
//! endpoint, the refresh-token key (`JWT_SECRET`) only the six that issue or spend refresh
//! tokens, the signing keys only the five that issue access tokens, the two-step key only the
//! two-step endpoints.

/// The access token keys a function needs (see [`crate::jwt::AccessKeys`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeysNeeded {
    /// It never sees an access token (forgot and reset password).
    None,
    /// It verifies access tokens: the published public keys.
    Verify,
    /// It issues tokens: the private key document (`SIGNING_KEYS_SECRET_ID`).
    Sign,
}

/// What an endpoint function needs at start, beyond what every endpoint reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    pub keys: KeysNeeded,
    /// It sends mail: `MAIL_FROM` is required, and SES is called.
    pub mail: bool,
    /// It holds the two-step key (`MFA_KEY_SECRET_ID`).
    pub mfa: bool,
    /// It issues or spends refresh tokens: the refresh-token key (`JWT_SECRET_ID`).
    pub refresh: bool,
}

/// How a function starts, and so what it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// An endpoint behind the API, built on [`crate::handlers::Deps`].
    Endpoint(Needs),
    /// Discovery and JWKS: the published keys, nothing secret.
    WellKnown,
    /// The signing keys' rotation function, invoked by Secrets Manager with the secret's id.
    KeyRotation,
}

/// The names of the variables, where the code reads them.
pub mod var {
    pub const USERS_TABLE: &str = "USERS_TABLE";
    pub const TOKENS_TABLE: &str = "TOKENS_TABLE";
    pub const SESSIONS_TABLE: &str = "SESSIONS_TABLE";
    pub const JWT_SECRET_ID: &str = "JWT_SECRET_ID";
    pub const JWT_SECRET_ACCEPT_PREVIOUS: &str = "JWT_SECRET_ACCEPT_PREVIOUS";
    pub const HASH_KEY_SECRET_ID: &str = "HASH_KEY_SECRET_ID";
    pub const SIGNING_KEYS_SECRET_ID: &str = "SIGNING_KEYS_SECRET_ID";
    pub const MFA_KEY_SECRET_ID: &str = "MFA_KEY_SECRET_ID";
    pub const JWT_ISSUER: &str = "JWT_ISSUER";
    pub const MAIL_FROM: &str = "MAIL_FROM";
    pub const PUBLIC_KEYS_MAX_AGE_SECONDS: &str = "PUBLIC_KEYS_MAX_AGE_SECONDS";
    pub const KEY_LISTED_BEFORE_SIGNING_SECONDS: &str = "KEY_LISTED_BEFORE_SIGNING_SECONDS";
    pub const ACCESS_TOKEN_TTL_SECONDS: &str = "ACCESS_TOKEN_TTL_SECONDS";
}

/// What the deployment decides for every endpoint.
const ENDPOINT: &[&str] = &[
    var::USERS_TABLE,
    var::TOKENS_TABLE,
    var::SESSIONS_TABLE,
    var::HASH_KEY_SECRET_ID,
    var::JWT_ISSUER,
    "JWT_AUDIENCE",
    "ALLOWED_ORIGINS",
    "COOKIE_SAMESITE",
    "REQUIRE_VERIFIED_EMAIL",
];

/// Settings with defaults (docs/deploy.md, "Configuration"): read by the functions, set by the
/// template only where a deployment should choose.
pub const TUNING: &[&str] = &[
    var::ACCESS_TOKEN_TTL_SECONDS,
    "REFRESH_TOKEN_TTL_SECONDS",
    "ACCESS_TOKEN_SCOPE",
    "SESSION_IDLE_TIMEOUT_SECONDS",
    "REFRESH_REUSE_INTERVAL_SECONDS",
    "RESET_CODE_TTL_SECONDS",
    "RESET_CODE_MAX_ATTEMPTS",
    "CODE_MAX_ATTEMPTS_TOTAL",
    "EMAIL_CODE_TTL_SECONDS",
    "LOGIN_LOCKOUT_THRESHOLD",
    "LOGIN_CLIENT_LIMIT",
    "FORGOT_CLIENT_LIMIT",
    "PROBE_CLIENT_LIMIT",
    "CLIENT_LIMIT_WINDOW_SECONDS",
    "FORGOT_ADDRESS_INTERVAL_SECONDS",
    "FORGOT_ADDRESS_HOURLY_LIMIT",
    "FORGOT_MIN_RESPONSE_MS",
    "MFA_ISSUER",
    var::PUBLIC_KEYS_MAX_AGE_SECONDS,
    var::KEY_LISTED_BEFORE_SIGNING_SECONDS,
];

/// Secret values, as configuration names them once read: never taken from the environment.
pub const SECRET_VALUES: &[&str] = &["HASH_KEY", "JWT_SECRET", "JWT_SECRET_PREVIOUS", "MFA_KEY"];

/// What an endpoint holds besides the hash key.
#[derive(Debug, Clone, Copy)]
enum Holds {
    /// Nothing more.
    Hash,
    /// The two-step key.
    Mfa,
    /// The refresh-token key.
    Refresh,
    /// Both.
    RefreshMfa,
}

const fn endpoint(keys: KeysNeeded, mail: bool, holds: Holds) -> Start {
    let (refresh, mfa) = match holds {
        Holds::Hash => (false, false),
        Holds::Mfa => (false, true),
        Holds::Refresh => (true, false),
        Holds::RefreshMfa => (true, true),
    };
    Start::Endpoint(Needs {
        keys,
        mail,
        mfa,
        refresh,
    })
}

/// Every function, by its package name (`functions/<name>`, the template's `Binary`).
pub const FUNCTIONS: &[(&str, Start)] = {
    use Holds::{Hash, Mfa, Refresh, RefreshMfa};
    use KeysNeeded::{None, Sign, Verify};
    &[
        ("register", endpoint(Sign, true, Refresh)),
        ("login", endpoint(Sign, false, Refresh)),
        ("refresh", endpoint(Sign, false, Refresh)),
        ("logout", endpoint(Verify, false, Refresh)),
        ("me", endpoint(Verify, false, Hash)),
        ("update-me", endpoint(Verify, true, Hash)),
        ("delete-me", endpoint(Verify, false, Hash)),
        ("change-password", endpoint(Sign, true, Refresh)),
        ("forgot-password", endpoint(None, true, Hash)),
        ("reset-password", endpoint(None, true, Hash)),
        ("verify-email", endpoint(None, false, Hash)),
        ("resend-verification", endpoint(None, true, Hash)),
        ("list-sessions", endpoint(Verify, false, Hash)),
        ("revoke-session", endpoint(Verify, false, Hash)),
        ("mfa-totp-setup", endpoint(Verify, false, Mfa)),
        ("mfa-totp-confirm", endpoint(Verify, true, Mfa)),
        ("mfa-verify", endpoint(Sign, false, RefreshMfa)),
        ("mfa-totp-disable", endpoint(Verify, true, Mfa)),
        ("mfa-totp-undo", endpoint(None, true, Hash)),
        ("discovery", Start::WellKnown),
        ("jwks", Start::WellKnown),
        ("rotate-keys", Start::KeyRotation),
    ]
};

/// How the function `name` starts, when it is one of [`FUNCTIONS`].
pub fn start_of(name: &str) -> Option<Start> {
    FUNCTIONS
        .iter()
        .find(|(function, _)| *function == name)
        .map(|(_, start)| *start)
}

impl Start {
    /// The variables the deployment must set for a function that starts this way.
    pub fn variables(self) -> Vec<&'static str> {
        match self {
            Self::Endpoint(needs) => {
                let mut variables = ENDPOINT.to_vec();
                // (The hash key's id, the first, is among every endpoint's.)
                variables.extend(needs.secret_variables().into_iter().skip(1));
                if needs.refresh {
                    variables.push(var::JWT_SECRET_ACCEPT_PREVIOUS);
                }
                if needs.mail {
                    variables.extend([
                        var::MAIL_FROM,
                        "RESET_URL_TEMPLATE",
                        "MAIL_CONFIGURATION_SET",
                    ]);
                }
                variables
            }
            Self::WellKnown | Self::KeyRotation => vec![var::USERS_TABLE, var::JWT_ISSUER],
        }
    }

    /// The variables that name a secret this function reads at start. (The rotation function
    /// reads the secret that Secrets Manager names in each event.)
    pub fn secret_variables(self) -> Vec<&'static str> {
        match self {
            Self::Endpoint(needs) => needs.secret_variables(),
            Self::WellKnown | Self::KeyRotation => Vec::new(),
        }
    }
}

impl Needs {
    /// The hash key always, then the refresh-token key, the signing keys and the MFA key when
    /// needed.
    fn secret_variables(self) -> Vec<&'static str> {
        let mut variables = vec![var::HASH_KEY_SECRET_ID];
        if self.refresh {
            variables.push(var::JWT_SECRET_ID);
        }
        if self.keys == KeysNeeded::Sign {
            variables.push(var::SIGNING_KEYS_SECRET_ID);
        }
        if self.mfa {
            variables.push(var::MFA_KEY_SECRET_ID);
        }
        variables
    }
}

/// The whole list as JSON, for the template check: `{"functions": {name: {"variables": [..],
/// "secrets": [..]}}, "tuning": [..]}`.
pub fn as_json() -> serde_json::Value {
    let functions: serde_json::Map<String, serde_json::Value> = FUNCTIONS
        .iter()
        .map(|(name, start)| {
            let entry = serde_json::json!({
                "variables": start.variables(),
                "secrets": start.secret_variables(),
            });
            ((*name).to_owned(), entry)
        })
        .collect();
    serde_json::json!({ "functions": functions, "tuning": TUNING })
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeSet;

    use super::*;
    use crate::config::{Config, KeyRotationSettings, PublicKeySettings};

    /// Every name configuration reads, found by running it: a lookup that records each name and
    /// answers a valid value for the ones it cannot start without.
    fn names_config_reads() -> BTreeSet<String> {
        let asked = RefCell::new(BTreeSet::new());
        Config::from_lookup(|name| {
            asked.borrow_mut().insert(name.to_owned());
            match name {
                "HASH_KEY" => Some("0123456789abcdefghijklmnopqrstuvwxyzABCDEF".into()),
                "USERS_TABLE" | "TOKENS_TABLE" | "SESSIONS_TABLE" => Some("t".into()),
                _ => None,
            }
        })
        .expect("configuration with only its required names");
        asked.into_inner()
    }

    /// Every name the settings of discovery, JWKS and the key rotation read.
    fn names_key_settings_read() -> BTreeSet<String> {
        let asked = RefCell::new(BTreeSet::new());
        let lookup = |name: &str| {
            asked.borrow_mut().insert(name.to_owned());
            matches!(name, "USERS_TABLE" | "JWT_ISSUER").then(|| "x".to_owned())
        };
        PublicKeySettings::from_lookup(lookup).expect("public key settings");
        KeyRotationSettings::from_lookup(lookup).expect("rotation settings");
        asked.into_inner()
    }

    #[test]
    fn every_name_the_key_functions_read_is_listed_for_them_or_a_tuning() {
        let mut known: BTreeSet<&str> = TUNING.iter().copied().collect();
        known.extend(Start::WellKnown.variables());
        known.extend(Start::KeyRotation.variables());
        let unknown: Vec<String> = names_key_settings_read()
            .into_iter()
            .filter(|name| !known.contains(name.as_str()))
            .collect();
        assert!(unknown.is_empty(), "unlisted: {unknown:?}");
    }

    #[test]
    fn every_name_configuration_reads_is_a_deployment_variable_a_tuning_or_a_secret() {
        let mut known: BTreeSet<&str> = TUNING.iter().chain(SECRET_VALUES).copied().collect();
        for (_, start) in FUNCTIONS {
            known.extend(start.variables());
        }
        let unknown: Vec<String> = names_config_reads()
            .into_iter()
            .filter(|name| !known.contains(name.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "configuration reads {unknown:?}: list each in functions.rs, as a deployment variable or a tuning"
        );
    }

    #[test]
    fn the_list_names_exactly_the_function_packages() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../functions");
        let packages: BTreeSet<String> = std::fs::read_dir(dir)
            .expect("the functions folder")
            .map(|entry| {
                entry
                    .expect("an entry")
                    .file_name()
                    .into_string()
                    .expect("utf-8")
            })
            .collect();
        let listed: BTreeSet<String> = FUNCTIONS.iter().map(|(n, _)| (*n).to_owned()).collect();
        assert_eq!(listed, packages);
    }

    #[test]
    fn issuers_read_the_signing_keys_and_two_step_functions_the_mfa_key() {
        let login = start_of("login").expect("login").variables();
        assert!(login.contains(&var::SIGNING_KEYS_SECRET_ID));
        assert!(!login.contains(&var::MFA_KEY_SECRET_ID));
        let me = start_of("me").expect("me").secret_variables();
        assert_eq!(me, [var::HASH_KEY_SECRET_ID], "no refresh-token key");
        let verify = start_of("mfa-verify")
            .expect("mfa-verify")
            .secret_variables();
        assert_eq!(
            verify,
            [
                var::HASH_KEY_SECRET_ID,
                var::JWT_SECRET_ID,
                var::SIGNING_KEYS_SECRET_ID,
                var::MFA_KEY_SECRET_ID
            ]
        );
        let forgot = start_of("forgot-password").expect("forgot").variables();
        assert!(forgot.contains(&var::MAIL_FROM));
        assert!(
            start_of("jwks")
                .expect("jwks")
                .secret_variables()
                .is_empty()
        );
        assert_eq!(start_of("nothing"), None);
    }

    #[test]
    fn only_the_functions_that_issue_or_spend_refresh_tokens_hold_their_key() {
        let holders: BTreeSet<&str> = FUNCTIONS
            .iter()
            .filter(|(_, start)| start.secret_variables().contains(&var::JWT_SECRET_ID))
            .map(|(name, _)| *name)
            .collect();
        let expected = [
            "register",
            "login",
            "refresh",
            "logout",
            "change-password",
            "mfa-verify",
        ];
        assert_eq!(holders, expected.into_iter().collect());
        for (name, start) in FUNCTIONS {
            if let Start::Endpoint(_) = start {
                assert!(
                    start.secret_variables().contains(&var::HASH_KEY_SECRET_ID),
                    "{name} hashes codes and client addresses"
                );
            }
        }
    }

    #[test]
    fn no_name_is_both_a_deployment_variable_and_a_tuning() {
        for (name, start) in FUNCTIONS {
            for variable in start.variables() {
                assert!(!TUNING.contains(&variable), "{name}: {variable}");
            }
        }
    }
}
