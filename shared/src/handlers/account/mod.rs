//! The account: registration, the profile, deletion and the password change.

pub mod change_password;
pub mod delete_me;
pub mod me;
pub mod register;
pub mod update_me;
