//! What a function reads from its environment, by how it starts ([`Start`]). Each feature
//! folder of `handlers/` says how its functions start (its `FUNCTIONS`), and
//! [`crate::handlers::registry`] gathers them: the list the functions start from and the template
//! is checked against.
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
pub enum Holds {
    /// Nothing more.
    Hash,
    /// The two-step key.
    Mfa,
    /// The refresh-token key.
    Refresh,
    /// Both.
    RefreshMfa,
}

/// How an endpoint that needs `keys`, mails (`mail`) and holds `holds` starts: what a feature's
/// list of functions says of each.
pub const fn endpoint(keys: KeysNeeded, mail: bool, holds: Holds) -> Start {
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
