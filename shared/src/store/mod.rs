//! Where users live. The trait is what the handlers need; `dynamo` is the real thing, `memory` a
//! fake with the same semantics for handler tests.
//!
//! Users table layout (partition key `pk`, a string):
//!
//! | `pk`                   | attributes                                                    |
//! |------------------------|---------------------------------------------------------------|
//! | `USER#<id>`            | `username`, `email`, `full_name`, `password_hash`, `token_version`, `created_at`, `updated_at` |
//! | `EMAIL#<email>`        | `user_id`: claims the (lower-cased) email                     |
//! | `USERNAME#<username>`  | `user_id`: claims the (lower-cased) username                  |
//!
//! Uniqueness is enforced by writing the three items in one transaction, each conditioned on
//! `attribute_not_exists(pk)` (RG-01, DB-01): never a query followed by a put.

use std::future::Future;

use crate::domain::{Identifier, UserId, UserRecord};

pub mod dynamo;
#[cfg(any(test, feature = "test-util"))]
pub mod memory;

pub use dynamo::DynamoStore;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("email already taken")]
    EmailTaken,
    #[error("username already taken")]
    UsernameTaken,
    /// An outage, throttling that outlasted the retries, or a bug: answered with a 503.
    #[error("storage unavailable: {0}")]
    Unavailable(BoxError),
}

pub trait UserStore: Send + Sync {
    /// Creates the user and claims its email and username, all or nothing.
    fn create_user(&self, user: &UserRecord)
    -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The id of the user an email or username belongs to (a strongly consistent read).
    fn find_user_id(
        &self,
        identifier: &Identifier,
    ) -> impl Future<Output = Result<Option<UserId>, StoreError>> + Send;

    /// The user record (a strongly consistent read).
    fn get_user(
        &self,
        id: UserId,
    ) -> impl Future<Output = Result<Option<UserRecord>, StoreError>> + Send;
}

fn user_key(id: UserId) -> String {
    format!("USER#{id}")
}

fn email_key(email: &str) -> String {
    format!("EMAIL#{email}")
}

fn username_key(username_key: &str) -> String {
    format!("USERNAME#{username_key}")
}

fn identifier_key(identifier: &Identifier) -> String {
    match identifier {
        Identifier::Email(email) => email_key(email.as_str()),
        Identifier::Username(username) => username_key(&username.key()),
    }
}
