//! An in-memory [`Store`] with the same uniqueness semantics as DynamoDB, for handler tests.

use std::collections::HashMap;
use std::sync::Mutex;

use time::OffsetDateTime;

use crate::domain::TotpState;
use crate::domain::{Email, Identifier, Lockout, StoredCode, UserId, UserRecord};
use crate::signing::PublicKeys;
use crate::store::{
    Attempt, Codes, Counter, Limits, LockTarget, Mfa, MfaChallenge, Published, SecondFactor,
    SessionRecord, Sessions, Spend, SpendOutcome, StoreError, Users, keys,
};
use crate::throttle::{self, Quota};

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
    spent: HashMap<String, Spend>,
    /// Revoked sessions -> reason.
    revoked: HashMap<String, &'static str>,
    /// Session records by user and id.
    sessions: HashMap<(UserId, String), SessionRecord>,
    /// Counters and identifier locks by key.
    counters: HashMap<String, Counter>,
    /// Cooldowns by key -> until.
    cooldowns: HashMap<String, u64>,
    /// Pending email changes: the hashed address -> who asked last.
    pending: HashMap<String, UserId>,
    /// Sign-ins waiting for their second factor, by token hash.
    challenges: HashMap<String, MfaChallenge>,
    published: Option<PublicKeys>,
}

impl Inner {
    /// Spends `factor` on the user's enabled TOTP, as DynamoDB's conditional update does.
    fn spend(&mut self, user_id: UserId, factor: &SecondFactor) -> Result<(), StoreError> {
        let totp = self
            .user(user_id)?
            .totp
            .as_mut()
            .filter(|totp| totp.enabled)
            .ok_or(StoreError::Conflict)?;
        match factor {
            SecondFactor::Totp { step } => {
                if totp.last_step.is_some_and(|last| last >= *step) {
                    return Err(StoreError::Conflict);
                }
                totp.last_step = Some(*step);
            }
            SecondFactor::RecoveryCode { hash } => {
                let at = totp
                    .recovery_codes
                    .iter()
                    .position(|code| code == hash)
                    .ok_or(StoreError::Conflict)?;
                totp.recovery_codes.remove(at);
            }
        }
        Ok(())
    }

    fn user(&mut self, id: UserId) -> Result<&mut UserRecord, StoreError> {
        self.users.get_mut(&id).ok_or(StoreError::Conflict)
    }

    /// A lock target's state; `None` when a target that must exist (an account, a trust) does
    /// not.
    fn lockout(&self, target: &LockTarget) -> Option<Lockout> {
        let counter = |key: &str| {
            self.counters.get(key).map(|c| Lockout {
                failures: crate::crypto::saturating_u32(c.count),
                locked_until_ms: c.locked_until_ms,
            })
        };
        match target {
            LockTarget::User(id) => self.users.get(id).map(|u| u.lockout),
            LockTarget::Counter { key, .. } => Some(counter(key).unwrap_or_default()),
            LockTarget::Trusted(key) => counter(key),
        }
    }

    fn put_session(&mut self, session: &SessionRecord) {
        let key = (session.user_id, session.sid.clone());
        self.sessions.insert(key, session.clone());
    }

    fn set_lockout(&mut self, target: &LockTarget, lockout: Lockout) {
        match target {
            LockTarget::User(id) => {
                if let Some(user) = self.users.get_mut(id) {
                    user.lockout = lockout;
                }
            }
            LockTarget::Counter { key, .. } | LockTarget::Trusted(key) => {
                self.counters.insert(
                    key.clone(),
                    Counter {
                        key: key.clone(),
                        count: lockout.failures.into(),
                        locked_until_ms: lockout.locked_until_ms,
                    },
                );
            }
        }
    }
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

impl Published for MemoryStore {
    async fn published_keys(&self) -> Result<Option<PublicKeys>, StoreError> {
        Ok(self.lock().published.clone())
    }

    async fn publish_keys(&self, keys: &PublicKeys) -> Result<(), StoreError> {
        self.lock().published = Some(keys.clone());
        Ok(())
    }
}

impl Users for MemoryStore {
    async fn create_user(
        &self,
        user: &UserRecord,
        session: Option<&SessionRecord>,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let email = keys::email(user.email.as_str());
        let username = keys::username(&user.username.key());
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
        if let Some(session) = session {
            inner.put_session(session);
        }
        Ok(())
    }

    async fn find_user_id(&self, identifier: &Identifier) -> Result<Option<UserId>, StoreError> {
        Ok(self
            .lock()
            .markers
            .get(&keys::identifier(identifier))
            .copied())
    }

    async fn get_user(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.lock().users.get(&id).cloned())
    }

    async fn update_profile(&self, old: &UserRecord, new: &UserRecord) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let current = inner.user(old.id)?;
        if current.email != old.email || current.username != old.username {
            return Err(StoreError::Conflict);
        }
        let (old_email, new_email) = (
            keys::email(old.email.as_str()),
            keys::email(new.email.as_str()),
        );
        let (old_name, new_name) = (
            keys::username(&old.username.key()),
            keys::username(&new.username.key()),
        );
        if old_email != new_email && inner.markers.contains_key(&new_email) {
            return Err(StoreError::EmailTaken);
        }
        if old_name != new_name && inner.markers.contains_key(&new_name) {
            return Err(StoreError::UsernameTaken);
        }
        for (old_key, new_key) in [(old_email, new_email), (old_name, new_name)] {
            inner.markers.remove(&old_key);
            inner.markers.insert(new_key, old.id);
        }
        let user = inner.user(old.id)?;
        if old.email != new.email {
            user.reset_code = None;
        }
        user.username = new.username.clone();
        user.email = new.email.clone();
        user.full_name = new.full_name.clone();
        user.updated_at = new.updated_at;
        Ok(())
    }

    async fn set_password(
        &self,
        user_id: UserId,
        seen_version: u64,
        password_hash: &str,
        updated_at: OffsetDateTime,
        session: &SessionRecord,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let user = inner.user(user_id)?;
        if user.token_version != seen_version {
            return Err(StoreError::Conflict);
        }
        replace_password(user, password_hash, updated_at);
        inner.put_session(session);
        Ok(())
    }

    async fn upgrade_password_hash(
        &self,
        user_id: UserId,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let user = inner.user(user_id)?;
        if user.password_hash != old_hash {
            return Err(StoreError::Conflict);
        }
        user.password_hash = new_hash.to_owned();
        Ok(())
    }

    async fn delete_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.users.remove(&user.id).ok_or(StoreError::Conflict)?;
        inner.markers.retain(|_, owner| *owner != user.id);
        Ok(())
    }
}

impl Sessions for MemoryStore {
    async fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        self.lock().put_session(session);
        Ok(())
    }

    async fn list_sessions(&self, user_id: UserId) -> Result<Vec<SessionRecord>, StoreError> {
        Ok(self
            .lock()
            .sessions
            .values()
            .filter(|s| s.user_id == user_id)
            .cloned()
            .collect())
    }

    async fn get_session(
        &self,
        user_id: UserId,
        sid: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self
            .lock()
            .sessions
            .get(&(user_id, sid.to_owned()))
            .cloned())
    }

    async fn delete_sessions(&self, user_id: UserId) -> Result<(), StoreError> {
        self.lock()
            .sessions
            .retain(|(owner, _), _| *owner != user_id);
        Ok(())
    }

    async fn spend_refresh_token(
        &self,
        spend: &Spend,
        session: &SessionRecord,
    ) -> Result<SpendOutcome, StoreError> {
        let mut inner = self.lock();
        let session_revoked = inner.revoked.contains_key(&spend.sid);
        if let Some(spent) = inner.spent.get(&spend.spent_jti) {
            let winner = spent.clone();
            return Ok(SpendOutcome::AlreadySpent {
                winner,
                session_revoked,
            });
        }
        if session_revoked {
            return Ok(SpendOutcome::SessionRevoked);
        }
        inner.spent.insert(spend.spent_jti.clone(), spend.clone());
        let key = (session.user_id, session.sid.clone());
        let record = inner.sessions.entry(key).or_insert_with(|| session.clone());
        record.last_used_at = session.last_used_at;
        Ok(SpendOutcome::Spent)
    }

    async fn is_spent(&self, jti: &str) -> Result<bool, StoreError> {
        Ok(self.lock().spent.contains_key(jti))
    }

    async fn is_revoked(&self, sid: &str) -> Result<bool, StoreError> {
        Ok(self.lock().revoked.contains_key(sid))
    }

    async fn is_live(&self, jti: &str, sid: &str) -> Result<bool, StoreError> {
        let inner = self.lock();
        Ok(!inner.spent.contains_key(jti) && !inner.revoked.contains_key(sid))
    }

    async fn revoke_session(
        &self,
        sid: &str,
        user_id: UserId,
        reason: &'static str,
        _revoked_at: u64,
        _expires_at: u64,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.revoked.entry(sid.to_owned()).or_insert(reason);
        inner.sessions.remove(&(user_id, sid.to_owned()));
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

impl Codes for MemoryStore {
    async fn store_reset_code(&self, user_id: UserId, code: &StoredCode) -> Result<(), StoreError> {
        self.lock().user(user_id)?.reset_code = Some(code.clone());
        Ok(())
    }

    async fn reset_password(
        &self,
        user_id: UserId,
        code_hash: &str,
        password_hash: &str,
        updated_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let user = inner.user(user_id)?;
        if user.reset_code.as_ref().map(|c| c.hash.as_str()) != Some(code_hash) {
            return Err(StoreError::Conflict);
        }
        replace_password(user, password_hash, updated_at);
        user.email_verified = true;
        user.verify_code = None;
        Ok(())
    }

    async fn store_verify_code(
        &self,
        user_id: UserId,
        code: &StoredCode,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let user = inner.user(user_id)?;
        if user.email_verified {
            return Err(StoreError::Conflict);
        }
        user.verify_code = Some(code.clone());
        Ok(())
    }

    async fn verify_email(
        &self,
        user_id: UserId,
        code_hash: &str,
        updated_at: OffsetDateTime,
    ) -> Result<UserRecord, StoreError> {
        let mut inner = self.lock();
        let user = inner.user(user_id)?;
        if user.verify_code.as_ref().map(|c| c.hash.as_str()) != Some(code_hash) {
            return Err(StoreError::Conflict);
        }
        user.email_verified = true;
        user.verify_code = None;
        user.updated_at = updated_at;
        Ok(user.clone())
    }

    async fn request_email_change(
        &self,
        user_id: UserId,
        new_email: &Email,
        code: &StoredCode,
        pending_key: &str,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let user = inner.user(user_id)?;
        user.pending_email = Some(new_email.clone());
        user.verify_code = Some(code.clone());
        inner.pending.insert(pending_key.to_owned(), user_id);
        Ok(())
    }

    async fn find_pending_owner(&self, pending_key: &str) -> Result<Option<UserId>, StoreError> {
        Ok(self.lock().pending.get(pending_key).copied())
    }

    async fn confirm_email_change(
        &self,
        user: &UserRecord,
        code_hash: &str,
        pending_key: &str,
        updated_at: OffsetDateTime,
    ) -> Result<UserRecord, StoreError> {
        let mut inner = self.lock();
        let stored = inner.users.get(&user.id).ok_or(StoreError::Conflict)?;
        let new_email = stored.pending_email.clone().ok_or(StoreError::Conflict)?;
        if stored.verify_code.as_ref().map(|c| c.hash.as_str()) != Some(code_hash)
            || stored.email != user.email
        {
            return Err(StoreError::Conflict);
        }
        let new_key = keys::email(new_email.as_str());
        if inner.markers.contains_key(&new_key) {
            return Err(StoreError::EmailTaken);
        }
        inner.markers.remove(&keys::email(user.email.as_str()));
        inner.markers.insert(new_key, user.id);
        inner.pending.remove(pending_key);
        let switched = inner.user(user.id)?;
        switched.email = new_email;
        switched.pending_email = None;
        switched.email_verified = true;
        switched.verify_code = None;
        switched.reset_code = None;
        switched.updated_at = updated_at;
        Ok(switched.clone())
    }
}

impl Mfa for MemoryStore {
    async fn begin_totp(
        &self,
        user_id: UserId,
        sealed_secret: &str,
        pending_until: u64,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let user = inner.user(user_id)?;
        if user.mfa_enabled() {
            return Err(StoreError::Conflict);
        }
        user.totp = Some(TotpState {
            sealed_secret: sealed_secret.to_owned(),
            enabled: false,
            last_step: None,
            recovery_codes: Vec::new(),
            undo: None,
            pending_until: Some(pending_until),
        });
        Ok(())
    }

    async fn enable_totp(
        &self,
        user_id: UserId,
        sealed_secret: &str,
        step: u64,
        recovery_codes: &[String],
        undo: &StoredCode,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let totp = inner
            .user(user_id)?
            .totp
            .as_mut()
            .filter(|totp| !totp.enabled && totp.sealed_secret == sealed_secret)
            .ok_or(StoreError::Conflict)?;
        totp.enabled = true;
        totp.last_step = Some(step);
        totp.recovery_codes = recovery_codes.to_vec();
        totp.undo = Some(undo.clone());
        totp.pending_until = None;
        Ok(())
    }

    async fn undo_totp(
        &self,
        user_id: UserId,
        undo_hash: &str,
        updated_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let user = inner.user(user_id)?;
        let undoes = (user.totp.as_ref())
            .filter(|totp| totp.enabled)
            .and_then(|totp| totp.undo.as_ref())
            .is_some_and(|undo| undo.hash == undo_hash);
        if !undoes {
            return Err(StoreError::Conflict);
        }
        user.totp = None;
        user.token_version += 1;
        user.updated_at = updated_at;
        Ok(())
    }

    async fn disable_totp(&self, user_id: UserId, factor: &SecondFactor) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.spend(user_id, factor)?;
        inner.user(user_id)?.totp = None;
        Ok(())
    }

    async fn create_challenge(&self, challenge: &MfaChallenge) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner
            .challenges
            .insert(challenge.token_hash.clone(), challenge.clone());
        Ok(())
    }

    async fn try_challenge(
        &self,
        token_hash: &str,
        max_tries: u32,
        now: u64,
    ) -> Result<Option<MfaChallenge>, StoreError> {
        let mut inner = self.lock();
        let Some(challenge) = inner
            .challenges
            .get_mut(token_hash)
            .filter(|c| c.expires_at > now && c.tries < max_tries)
        else {
            return Ok(None);
        };
        challenge.tries += 1;
        Ok(Some(challenge.clone()))
    }

    async fn complete_challenge(
        &self,
        challenge: &MfaChallenge,
        factor: &SecondFactor,
        session: &SessionRecord,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if !inner.challenges.contains_key(&challenge.token_hash) {
            return Err(StoreError::Conflict);
        }
        // All or nothing: the factor is checked before anything changes.
        inner.spend(challenge.user_id, factor)?;
        inner.challenges.remove(&challenge.token_hash);
        inner.put_session(session);
        Ok(())
    }
}

impl Limits for MemoryStore {
    async fn find_user_id_with_counters(
        &self,
        identifier: Option<&Identifier>,
        counter_keys: &[String],
    ) -> Result<(Option<UserId>, Vec<Counter>), StoreError> {
        let inner = self.lock();
        let owner = identifier.and_then(|i| inner.markers.get(&keys::identifier(i)).copied());
        let counters = counter_keys
            .iter()
            .filter_map(|k| inner.counters.get(k).cloned())
            .collect();
        Ok((owner, counters))
    }

    async fn reserve_attempt(
        &self,
        target: &LockTarget,
        _seen: Lockout,
        threshold: u32,
        now_ms: u64,
    ) -> Result<Attempt, StoreError> {
        let mut inner = self.lock();
        let Some(mut lockout) = inner.lockout(target) else {
            return Ok(Attempt::Locked {
                until_ms: now_ms + 1000,
            });
        };
        if lockout.locked_until_ms > now_ms {
            return Ok(Attempt::Locked {
                until_ms: lockout.locked_until_ms,
            });
        }
        lockout.failures = lockout.failures.saturating_add(1);
        if let Some(secs) = throttle::lock_secs(lockout.failures, threshold) {
            lockout.locked_until_ms = now_ms + secs * 1000;
        }
        inner.set_lockout(target, lockout);
        Ok(Attempt::Admitted { lockout })
    }

    async fn release_attempt(
        &self,
        target: &LockTarget,
        admitted: Lockout,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.lockout(target).map(|l| l.failures) == Some(admitted.failures) {
            let released = Lockout {
                failures: admitted.failures.saturating_sub(1),
                locked_until_ms: admitted.locked_until_ms.min(now_ms),
            };
            inner.set_lockout(target, released);
        }
        Ok(())
    }

    async fn clear_attempts(&self, target: &LockTarget) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.lockout(target).is_some() {
            inner.set_lockout(target, Lockout::default());
        }
        Ok(())
    }

    async fn trust_client(&self, key: &str, _until: u64) -> Result<(), StoreError> {
        self.lock().counters.insert(
            key.to_owned(),
            Counter {
                key: key.to_owned(),
                ..Counter::default()
            },
        );
        Ok(())
    }

    async fn refund(&self, key: &str) -> Result<(), StoreError> {
        if let Some(counter) = self.lock().counters.get_mut(key) {
            counter.count = counter.count.saturating_sub(1);
        }
        Ok(())
    }

    async fn consume(&self, quotas: &[Quota], now: u64) -> Result<Option<u64>, StoreError> {
        let mut inner = self.lock();
        let mut wait = None;
        for quota in quotas {
            let exhausted = match quota {
                Quota::Counter {
                    key,
                    limit,
                    resets_at,
                } => inner
                    .counters
                    .get(key)
                    .is_some_and(|c| c.count >= u64::from(*limit))
                    .then_some(resets_at.saturating_sub(now)),
                Quota::Cooldown { key, .. } => inner
                    .cooldowns
                    .get(key)
                    .filter(|until| **until > now)
                    .map(|until| until - now),
            };
            if let Some(secs) = exhausted {
                wait = Some(wait.map_or(secs, |w: u64| w.max(secs)));
            }
        }
        if wait.is_some() {
            return Ok(wait);
        }
        for quota in quotas {
            match quota {
                Quota::Counter { key, .. } => {
                    inner
                        .counters
                        .entry(key.clone())
                        .or_insert_with(|| Counter {
                            key: key.clone(),
                            ..Counter::default()
                        })
                        .count += 1;
                }
                Quota::Cooldown { key, until } => {
                    inner.cooldowns.insert(key.clone(), *until);
                }
            }
        }
        Ok(None)
    }
}

fn replace_password(user: &mut UserRecord, password_hash: &str, updated_at: OffsetDateTime) {
    user.password_hash = password_hash.to_owned();
    user.token_version += 1;
    user.updated_at = updated_at;
    user.lockout = Lockout::default();
    user.reset_code = None;
}
