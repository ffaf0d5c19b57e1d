//! An in-memory [`UserStore`] with the same uniqueness semantics as DynamoDB, for handler tests.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{
    Rotation, RotationOutcome, StoreError, UserStore, email_key, identifier_key, username_key,
};
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
    /// Spent refresh tokens by jti.
    spent: HashMap<String, Rotation>,
    /// Revoked sessions -> reason.
    revoked: HashMap<String, &'static str>,
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

    /// Why a session was revoked, if it was.
    pub fn revocation(&self, sid: &str) -> Option<&'static str> {
        self.lock().revoked.get(sid).copied()
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

    async fn rotate_refresh_token(
        &self,
        rotation: &Rotation,
    ) -> Result<RotationOutcome, StoreError> {
        let mut inner = self.lock();
        let session_revoked = inner.revoked.contains_key(&rotation.sid);
        if let Some(spent) = inner.spent.get(&rotation.spent_jti) {
            let winner = spent.clone();
            return Ok(RotationOutcome::AlreadySpent {
                winner,
                session_revoked,
            });
        }
        if session_revoked {
            return Ok(RotationOutcome::SessionRevoked);
        }
        inner
            .spent
            .insert(rotation.spent_jti.clone(), rotation.clone());
        Ok(RotationOutcome::Rotated)
    }

    async fn is_spent(&self, jti: &str) -> Result<bool, StoreError> {
        Ok(self.lock().spent.contains_key(jti))
    }

    async fn revoke_session(
        &self,
        sid: &str,
        _user_id: UserId,
        reason: &'static str,
        _revoked_at: u64,
        _expires_at: u64,
    ) -> Result<(), StoreError> {
        self.lock().revoked.entry(sid.to_owned()).or_insert(reason);
        Ok(())
    }

    async fn revoke_all_sessions(
        &self,
        user_id: UserId,
        seen_version: u64,
    ) -> Result<(), StoreError> {
        if let Some(user) = self.lock().users.get_mut(&user_id)
            && user.token_version == seen_version
        {
            user.token_version += 1;
        }
        Ok(())
    }
}
