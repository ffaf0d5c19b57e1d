//! The account: registration, the profile, deletion and the password change.

pub mod change_password;
pub mod delete_me;
pub mod me;
pub mod register;
pub mod update_me;

use crate::functions::Holds::{Hash, Refresh};
use crate::functions::KeysNeeded::{Sign, Verify};
use crate::functions::{Start, endpoint};

/// The functions of this feature and how each starts (see [`crate::functions`]).
pub const FUNCTIONS: &[(&str, Start)] = &[
    ("register", endpoint(Sign, true, Refresh)),
    ("me", endpoint(Verify, false, Hash)),
    ("update-me", endpoint(Verify, true, Hash)),
    ("delete-me", endpoint(Verify, false, Hash)),
    ("change-password", endpoint(Sign, true, Refresh)),
];
