//! The public keys: OpenID discovery and the JWKS.

pub mod well_known;

use crate::functions::Start;

/// The functions of this feature and how each starts (see [`crate::functions`]): discovery
/// and the JWKS, and the signing keys' rotation, which no route reaches.
pub const FUNCTIONS: &[(&str, Start)] = &[
    ("discovery", Start::WellKnown),
    ("jwks", Start::WellKnown),
    ("rotate-keys", Start::KeyRotation),
];
