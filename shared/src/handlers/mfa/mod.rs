//! Two-step sign-in with TOTP: setting it up, confirming it, the second step, turning it off,
//! and what those share (`second_factor`).

pub mod mfa_totp_confirm;
pub mod mfa_totp_disable;
pub mod mfa_totp_setup;
pub mod mfa_verify;
pub(crate) mod second_factor;
