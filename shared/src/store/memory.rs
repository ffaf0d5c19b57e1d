//! An in-memory [`UserStore`] with the same uniqueness semantics as DynamoDB, for handler tests.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{StoreError, UserStore, email_key, identifier_key, username_key};
use crate::domain::{Identifier, UserId, UserRecord};

#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    users: HashMap<UserId, UserRecord>,
    /// `EMAIL#…` and `USERNAME#…` markers -> owner.
    markers: HashMap<String, UserId>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Raises a user's token version, as a revocation point does.
    pub fn bump_token_version(&self, id: UserId) {
        if let Some(user) = self.lock().users.get_mut(&id) {
            user.token_version += 1;
        }
    }

    /// How many users are stored (for assertions).
    pub fn user_count(&self) -> usize {
        self.lock().users.len()
    }
}

impl UserStore for MemoryStore {
    async fn create_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let email = email_key(user.email.as_str());
        let username = username_key(&user.username.key());
        if inner.users.contains_key(&user.id) {
            return Err(StoreError::Unavailable("user id collision".into()));
        }
        if inner.markers.contains_key(&email) {
            return Err(StoreError::EmailTaken);
        }
        if inner.markers.contains_key(&username) {
            return Err(StoreError::UsernameTaken);
        }
        inner.markers.insert(email, user.id);
        inner.markers.insert(username, user.id);
        inner.users.insert(user.id, user.clone());
        Ok(())
    }

    async fn find_user_id(&self, identifier: &Identifier) -> Result<Option<UserId>, StoreError> {
        Ok(self
            .lock()
            .markers
            .get(&identifier_key(identifier))
            .copied())
    }

    async fn get_user(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.lock().users.get(&id).cloned())
    }
}
