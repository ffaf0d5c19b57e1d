//! Signing in: the password sign-in, and who is asking (an access token, re-authentication).

pub(crate) mod auth;
pub(crate) mod guard;
pub mod login;
