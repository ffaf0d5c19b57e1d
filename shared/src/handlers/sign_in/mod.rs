//! Signing in: the password sign-in, and who is asking (an access token, re-authentication).

pub(crate) mod auth;
pub(crate) mod guard;
pub mod login;

use crate::functions::Holds::Refresh;
use crate::functions::KeysNeeded::Sign;
use crate::functions::{Start, endpoint};

/// The functions of this feature and how each starts (see [`crate::functions`]).
pub const FUNCTIONS: &[(&str, Start)] = &[("login", endpoint(Sign, false, Refresh))];
