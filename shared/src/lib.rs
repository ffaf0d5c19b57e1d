//! Everything the auth functions share: configuration, the HTTP contract (parsing, problem
//! responses, cookies), JWTs, password hashing, validated domain types, storage and the endpoint
//! handlers themselves. Each `functions/<name>/src/main.rs` only wires these together.

pub mod aws;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod error;
pub mod functions;
pub mod handlers;
pub mod http;
pub mod jwt;
pub mod key_ring;
pub mod logging;
pub mod mail;
pub mod mailed_codes;
pub mod outbox;
pub mod password;
pub mod rotation;
pub mod signing;
pub mod store;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod throttle;
pub mod totp;

pub use clock::{Clock, SystemClock};
pub use config::Config;
pub use error::ApiError;
