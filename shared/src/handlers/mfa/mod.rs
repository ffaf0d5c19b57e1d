//! Two-step sign-in with TOTP: setting it up, confirming it, the second step, turning it off,
//! and what those share (`second_factor`).

pub mod mfa_totp_confirm;
pub mod mfa_totp_disable;
pub mod mfa_totp_setup;
pub mod mfa_totp_undo;
pub mod mfa_verify;
pub(crate) mod second_factor;
#[cfg(test)]
mod test_support;

use crate::functions::{Holds, KeysNeeded, Start, endpoint};
use crate::store::{Limits, Mfa, Sessions, Users};

/// The functions of this feature and how each starts (see [`crate::functions`]).
pub const FUNCTIONS: &[(&str, Start)] = &[
    (
        "mfa-totp-setup",
        endpoint(KeysNeeded::Verify, false, Holds::Mfa),
    ),
    (
        "mfa-totp-confirm",
        endpoint(KeysNeeded::Verify, true, Holds::Mfa),
    ),
    (
        "mfa-verify",
        endpoint(KeysNeeded::Sign, false, Holds::RefreshMfa),
    ),
    (
        "mfa-totp-disable",
        endpoint(KeysNeeded::Verify, true, Holds::Mfa),
    ),
    (
        "mfa-totp-undo",
        endpoint(KeysNeeded::None, true, Holds::Hash),
    ),
];

/// How long a TOTP setup waits for its first code: after it, the pending secret is void and
/// setup starts again.
pub(crate) const TOTP_SETUP_SECS: u64 = 15 * 60;

/// What the two-step endpoints use of the store: the user, its sessions (a live one to manage
/// TOTP, a new one to finish a sign-in), the counts of wrong codes, and the factor itself.
pub trait TwoStepStore: Users + Sessions + Limits + Mfa {}

impl<S: Users + Sessions + Limits + Mfa> TwoStepStore for S {}

#[cfg(test)]
mod tests {
    use crate::handlers::mfa::test_support::*;

    #[tokio::test]
    async fn the_sample_event_of_the_second_step_reaches_it() {
        let (_, deps) = clocked();
        alice_with_totp(&deps).await;
        let (status, body) = call(mfa_verify::handle, &deps, event("mfa-verify")).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("invalid_token")),
            "its token is no live challenge"
        );
    }
}
