//! Sessions: issuing tokens and the token response, refresh, sign-out, the session list and
//! ending one session.

pub mod list_sessions;
pub mod logout;
pub mod refresh;
pub mod revoke_session;
pub(crate) mod tokens;

use crate::functions::Holds::{Hash, Refresh};
use crate::functions::KeysNeeded::{Sign, Verify};
use crate::functions::{Start, endpoint};

/// The functions of this feature and how each starts (see [`crate::functions`]).
pub const FUNCTIONS: &[(&str, Start)] = &[
    ("refresh", endpoint(Sign, false, Refresh)),
    ("logout", endpoint(Verify, false, Refresh)),
    ("list-sessions", endpoint(Verify, false, Hash)),
    ("revoke-session", endpoint(Verify, false, Hash)),
];
