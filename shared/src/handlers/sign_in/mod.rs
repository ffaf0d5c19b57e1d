//! Signing in: the password sign-in, and who is asking (an access token, re-authentication).

pub(crate) mod auth;
pub mod login;
