//! The account: registration, the profile, deletion and the password change.

pub mod change_password;
pub mod delete_me;
pub mod me;
pub mod register;
pub mod update_me;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_placeholder_token_refused, deps, event};

    #[tokio::test]
    async fn the_sample_events_reach_their_handlers() {
        let deps = deps();
        for (name, handler) in [("update-me", 0), ("change-password", 1), ("delete-me", 2)] {
            let req = event(name);
            let response = match handler {
                0 => update_me::handle(&deps, req).await,
                1 => change_password::handle(&deps, req).await,
                _ => delete_me::handle(&deps, req).await,
            }
            .expect("infallible");
            assert_placeholder_token_refused(&response);
        }
    }
}
