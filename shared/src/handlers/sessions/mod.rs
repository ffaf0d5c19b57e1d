//! Sessions: issuing tokens and the token response, refresh, sign-out, the session list and
//! ending one session.

pub mod list_sessions;
pub mod logout;
pub mod refresh;
pub mod revoke_session;
pub(crate) mod tokens;
