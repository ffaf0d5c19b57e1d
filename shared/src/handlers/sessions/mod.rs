//! Sessions: issuing tokens and the token response, refresh, sign-out, the session list and
//! ending one session.

pub mod list_sessions;
pub mod logout;
pub mod refresh;
pub mod revoke_session;
pub(crate) mod tokens;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_placeholder_token_refused, deps, event};

    #[tokio::test]
    async fn the_sample_events_of_the_signed_in_endpoints_reach_their_handlers() {
        let deps = deps();
        let listed = list_sessions::handle(&deps, event("list-sessions")).await;
        assert_placeholder_token_refused(&listed.expect("infallible"));
        let revoked = revoke_session::handle(&deps, event("revoke-session")).await;
        assert_placeholder_token_refused(&revoked.expect("infallible"));
    }
}
