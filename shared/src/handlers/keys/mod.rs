//! The public keys: OpenID discovery and the JWKS.

pub mod well_known;
