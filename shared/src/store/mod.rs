//! Where users live. Six capabilities, one trait each (`Users`, `Sessions`, `Codes`, `Limits`,
//! `Published`, `Mfa`), combined as `Store`, so a handler names only what it uses; `dynamo` is the real
//! thing (one file per entity), `memory` a fake with the same semantics for handler tests, `keys`
//! every item key.
//!
//! The items of the three tables, and the reads and writes of each flow, are described once, in
//! `docs/storage.md`. Uniqueness is enforced by writing the user and its email and username
//! records in one transaction, each conditioned on `attribute_not_exists(pk)` (RG-01, DB-01):
//! never a query followed by a put.

use std::future::Future;

use time::OffsetDateTime;

use crate::domain::{Email, Identifier, Lockout, StoredCode, UserId, UserRecord};
use crate::signing::PublicKeys;
use crate::throttle::Quota;

pub mod dynamo;
pub mod keys;

pub use dynamo::DynamoStore;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("email already taken")]
    EmailTaken,
    #[error("username already taken")]
    UsernameTaken,
    /// The record changed since it was read (a concurrent update), or is gone.
    #[error("the record changed concurrently")]
    Conflict,
    /// An outage, throttling that outlasted the retries, or a bug: answered with a 503.
    #[error("storage unavailable: {0}")]
    Unavailable(BoxError),
}

/// A refresh token being spent, and the successor that replaces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spend {
    pub spent_jti: String,
    pub sid: String,
    pub user_id: UserId,
    pub successor_jti: String,
    pub successor_iat: u64,
    /// When the token was spent (epoch milliseconds: the reuse interval is measured exactly,
    /// not in whole seconds that could cut it short by up to a second).
    pub spent_at_ms: u64,
    /// When the record may go: the spent token is refused by every verifier by then (its
    /// `exp` plus the leeway).
    pub expires_at: u64,
}

/// A session's record (sessions table): one per sign-in, what `GET /auth/sessions` lists. A
/// revocation deletes it (the revocation itself is the `SESSION#` record of the tokens table,
/// which a spend checks); expiry, idleness and a later revocation point are read from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub user_id: UserId,
    /// The `sid` claim of the session's tokens.
    pub sid: String,
    pub created_at: u64,
    /// The sign-in, or the last refresh.
    pub last_used_at: u64,
    /// The absolute expiry: the `exp` of the session's refresh tokens (a refresh keeps it).
    pub expires_at: u64,
    /// The user's token version when the session began: a later revocation point ends it.
    pub token_version: u64,
    /// The `User-Agent` that began it, truncated.
    pub user_agent: Option<String>,
    /// A keyed hash of the client address that began it, never the address.
    pub client: Option<String>,
}

impl SessionRecord {
    /// Whether the session can still refresh at `now`: not past its expiry, not unused longer
    /// than `idle_timeout`, and begun at the user's current `token_version`. Checked in code,
    /// because TTL deletion can lag by days.
    pub fn is_live(&self, now: u64, idle_timeout: u64, token_version: u64) -> bool {
        now < self.expires_at
            && now.saturating_sub(self.last_used_at) <= idle_timeout
            && self.token_version >= token_version
    }

    /// When the record may go: its refresh tokens verify no longer.
    pub fn ttl(&self) -> u64 {
        self.expires_at + crate::clock::LEEWAY_SECS
    }
}

/// What became of a spend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpendOutcome {
    /// The token was live; it is now spent and the successor recorded.
    Spent,
    /// The token had been spent before, by `winner`; its session may since have been revoked.
    AlreadySpent {
        winner: Spend,
        session_revoked: bool,
    },
    /// The token is unspent, but its session has been revoked.
    SessionRevoked,
}

/// Users and their uniqueness records.
pub trait Users: Send + Sync {
    /// Creates the user and claims its email and username, with the record of its first
    /// `session` when it signs in at once, all or nothing.
    fn create_user(
        &self,
        user: &UserRecord,
        session: Option<&SessionRecord>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

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

    /// Changes a user's username, email and full name. When the email or username changes, the
    /// old uniqueness record is freed and the new one taken in the same transaction, so a
    /// concurrent registration can neither steal nor duplicate it (RG-04). Fails with
    /// `Conflict` if the user changed since `old` was read.
    fn update_profile(
        &self,
        old: &UserRecord,
        new: &UserRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Replaces the password hash and raises the token version, which revokes every session and
    /// access token; clears failed sign-ins and any reset code; records the new `session` that
    /// the change begins; all in one transaction. Only while the token version is still
    /// `seen_version`; `Conflict` otherwise.
    fn set_password(
        &self,
        user_id: UserId,
        seen_version: u64,
        password_hash: &str,
        updated_at: OffsetDateTime,
        session: &SessionRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Replaces a hash made with older parameters by a hash of the same password at the current
    /// ones (PW-05), if it is still `old_hash`; `Conflict` otherwise (a password changed
    /// meanwhile stays). Revokes nothing: the password is the same.
    fn upgrade_password_hash(
        &self,
        user_id: UserId,
        old_hash: &str,
        new_hash: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes the user with its email and username records, in one transaction (DL-02).
    fn delete_user(&self, user: &UserRecord)
    -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Session records, spending refresh tokens and session revocation.
pub trait Sessions: Send + Sync {
    /// Records a session that a sign-in begins.
    fn create_session(
        &self,
        session: &SessionRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every session record of a user, live or not (a strongly consistent Query of the user's
    /// partition, never a Scan): the caller keeps the live ones (`SessionRecord::is_live`).
    fn list_sessions(
        &self,
        user_id: UserId,
    ) -> impl Future<Output = Result<Vec<SessionRecord>, StoreError>> + Send;

    /// One session of one user: `None` for an unknown id and for another user's alike.
    fn get_session(
        &self,
        user_id: UserId,
        sid: &str,
    ) -> impl Future<Output = Result<Option<SessionRecord>, StoreError>> + Send;

    /// Deletes every session record of a user (the account is gone; its tokens already fail).
    fn delete_sessions(
        &self,
        user_id: UserId,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Spends a refresh token and records its successor, in one atomic conditional write: of
    /// any number of concurrent spends of one token, exactly one is `Spent`. The same
    /// write moves the session record's last use to `session.last_used_at` (and writes the
    /// rest of `session` where the session has no record yet).
    fn spend_refresh_token(
        &self,
        spend: &Spend,
        session: &SessionRecord,
    ) -> impl Future<Output = Result<SpendOutcome, StoreError>> + Send;

    /// Whether a refresh token has been spent (a strongly consistent read).
    fn is_spent(&self, jti: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Whether a session has been revoked (a strongly consistent read of its revocation).
    fn is_revoked(&self, sid: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Whether a refresh token is neither spent nor of a revoked session (strongly consistent
    /// reads).
    fn is_live(
        &self,
        jti: &str,
        sid: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Revokes one session until `expires_at` (its refresh tokens' expiry) and deletes its
    /// record, in one transaction. Idempotent: the first revocation and its reason stay.
    fn revoke_session(
        &self,
        sid: &str,
        user_id: UserId,
        reason: &'static str,
        revoked_at: u64,
        expires_at: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Revokes every session and access token of a user by raising its token version, if it is
    /// still `seen_version` (so a stale token cannot raise it again).
    fn revoke_all_sessions(
        &self,
        user_id: UserId,
        seen_version: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Mailed codes (password reset, email verification): stored hashed, spent once (their tries
/// are counted per code and client by `Limits::consume`).
pub trait Codes: Send + Sync {
    /// Stores a new reset code for an existing user, replacing any earlier one.
    fn store_reset_code(
        &self,
        user_id: UserId,
        code: &StoredCode,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Sets a new password if the user's reset code is still `code_hash` (single use), raising
    /// the token version, clearing the code and marking the address verified (the code came
    /// through it); `Conflict` otherwise.
    fn reset_password(
        &self,
        user_id: UserId,
        code_hash: &str,
        password_hash: &str,
        updated_at: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Stores a new email verification code for a user whose address is not verified yet,
    /// replacing any earlier one; `Conflict` when there is no such user.
    fn store_verify_code(
        &self,
        user_id: UserId,
        code: &StoredCode,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Marks the address verified if the user's verification code is still `code_hash` (single
    /// use), clearing the code: the user as it now is, or `Conflict`.
    fn verify_email(
        &self,
        user_id: UserId,
        code_hash: &str,
        updated_at: OffsetDateTime,
    ) -> impl Future<Output = Result<UserRecord, StoreError>> + Send;

    /// Records, in one transaction, that `user_id` asked to change its address to `new_email`:
    /// the pending address and its code on the user (replacing any earlier code), and the record
    /// `pending_key` naming the user until the code expires. `Conflict` when there is no such
    /// user.
    fn request_email_change(
        &self,
        user_id: UserId,
        new_email: &Email,
        code: &StoredCode,
        pending_key: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Who last asked to change to the address of `pending_key`.
    fn find_pending_owner(
        &self,
        pending_key: &str,
    ) -> impl Future<Output = Result<Option<UserId>, StoreError>> + Send;

    /// Switches `user` to its pending address if its code is still `code_hash`, in one
    /// transaction: the user (verified, the codes cleared), the old uniqueness record freed and
    /// the new one taken, the pending record gone. `EmailTaken` when someone took the address
    /// meanwhile; `Conflict` when the code was spent or replaced.
    fn confirm_email_change(
        &self,
        user: &UserRecord,
        code_hash: &str,
        pending_key: &str,
        updated_at: OffsetDateTime,
    ) -> impl Future<Output = Result<UserRecord, StoreError>> + Send;
}

/// Throttling state: failed sign-ins, counters and cooldowns.
pub trait Limits: Send + Sync {
    /// Reads the owner of an identifier together with some counters, in one call (sign-in reads
    /// its throttling state without an extra round trip).
    fn find_user_id_with_counters(
        &self,
        identifier: Option<&Identifier>,
        counter_keys: &[String],
    ) -> impl Future<Output = Result<(Option<UserId>, Vec<Counter>), StoreError>> + Send;

    /// Reserves one password check against `target` before the check is made: counts it as a
    /// failure, and sets the lock when the count reaches `threshold` (see
    /// `throttle::lock_secs`), in one conditional write, unless `target` is locked at `now`.
    /// `seen` is the state as last read (the write is conditioned on it, and retried on what a
    /// concurrent writer left), so of any number of racing attempts at most `threshold` are
    /// admitted before the lock, and an attempt refused during a lock extends nothing.
    fn reserve_attempt(
        &self,
        target: &LockTarget,
        seen: Lockout,
        threshold: u32,
        now_ms: u64,
    ) -> impl Future<Output = Result<Attempt, StoreError>> + Send;

    /// Gives back the failure a reservation counted, leaving `admitted` (what
    /// `reserve_attempt` answered), if nothing has counted since: the count one lower and any
    /// lock it armed lifted at `now_ms`. For a right password whose sign-in is not over yet
    /// (a second step follows): it neither counts nor forgets earlier failures.
    fn release_attempt(
        &self,
        target: &LockTarget,
        admitted: Lockout,
        now_ms: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets the failures (and the lock) of `target` after a right password.
    fn clear_attempts(
        &self,
        target: &LockTarget,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Marks a client address as one the account's owner has used (a right password, or a reset
    /// through the mailbox) until `until`, with no failures: from there, sign-in answers to a
    /// lock of its own instead of the account's (see `keys::trusted_client`).
    fn trust_client(
        &self,
        key: &str,
        until: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Gives back one unit of a counter that `consume` took (a sign-in that turned out right is
    /// not a failure).
    fn refund(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Consumes one unit of every quota, all or none. `Ok(None)` when the request fits;
    /// `Ok(Some(seconds))` when a quota is exhausted, with how long until it frees up.
    fn consume(
        &self,
        quotas: &[Quota],
        now: u64,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;
}

/// What the service publishes: the public keys of its access tokens, with the issuer. Only the
/// key rotation writes them.
pub trait Published: Send + Sync {
    fn published_keys(&self)
    -> impl Future<Output = Result<Option<PublicKeys>, StoreError>> + Send;

    fn publish_keys(
        &self,
        keys: &PublicKeys,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Every capability: what a handler that needs all of them asks for, and what each store
/// (DynamoDB, the in-memory fake) provides.
/// A sign-in waiting for its second factor (`POST /auth/mfa/verify`).
#[derive(Clone, PartialEq, Eq)]
pub struct MfaChallenge {
    /// A hash of the `mfa_token` (the token itself is never stored).
    pub token_hash: String,
    pub user_id: UserId,
    /// The user's token version at the first step: a revocation point in between (a password
    /// reset, a global logout) ends the challenge too.
    pub token_version: u64,
    pub expires_at: u64,
    /// Codes tried so far, each counted before it is checked.
    pub tries: u32,
}

impl std::fmt::Debug for MfaChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaChallenge")
            .field("user_id", &self.user_id)
            .field("token_version", &self.token_version)
            .field("expires_at", &self.expires_at)
            .field("tries", &self.tries)
            .finish_non_exhaustive()
    }
}

/// A second factor that checked out, as the write that spends it needs it.
#[derive(Clone, PartialEq, Eq)]
pub enum SecondFactor {
    /// A TOTP code of this time step: accepted only by moving the last step forward to it.
    Totp { step: u64 },
    /// A recovery code, by its stored hash: accepted only by removing the hash.
    RecoveryCode { hash: String },
}

impl std::fmt::Debug for SecondFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Totp { step } => f.debug_struct("Totp").field("step", step).finish(),
            Self::RecoveryCode { .. } => f.write_str("RecoveryCode(..)"),
        }
    }
}

/// Two-step sign-in: a user's TOTP, and sign-ins waiting for it. Every write that accepts a
/// code is conditional on the code being unspent (the step moves forward, the recovery code's
/// hash is still there), so of any number of racing requests with one code, one wins (MF-01,
/// MF-02).
pub trait Mfa: Send + Sync {
    /// Keeps `sealed_secret` as the user's pending TOTP secret until `pending_until` (replacing
    /// one not confirmed yet). `Conflict` when TOTP is enabled.
    fn begin_totp(
        &self,
        user_id: UserId,
        sealed_secret: &str,
        pending_until: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Enables the pending secret `sealed_secret` at accepted step `step`, with the recovery
    /// codes' hashes and the mailed code that undoes it. `Conflict` when that secret is no
    /// longer the pending one, or TOTP is enabled.
    fn enable_totp(
        &self,
        user_id: UserId,
        sealed_secret: &str,
        step: u64,
        recovery_codes: &[String],
        undo: &StoredCode,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes the user's TOTP through the mailbox (MF-07), if `undo_hash` is still its undo
    /// code, and raises its revocation point (every session ends), in one write. `Conflict`
    /// otherwise (spent, or TOTP off or turned on anew).
    fn undo_totp(
        &self,
        user_id: UserId,
        undo_hash: &str,
        updated_at: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes the user's TOTP, spending `factor` in the same write. `Conflict` when the factor
    /// was spent meanwhile (or TOTP is off).
    fn disable_totp(
        &self,
        user_id: UserId,
        factor: &SecondFactor,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Stores a new challenge, until its expiry.
    fn create_challenge(
        &self,
        challenge: &MfaChallenge,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Counts one try of a challenge, if it is there, unexpired at `now` and has tried fewer
    /// than `max_tries` codes; the challenge after the count, else `None`.
    fn try_challenge(
        &self,
        token_hash: &str,
        max_tries: u32,
        now: u64,
    ) -> impl Future<Output = Result<Option<MfaChallenge>, StoreError>> + Send;

    /// Ends a challenge with its second factor, in one transaction: the challenge is deleted
    /// (single use), `factor` spent, and `session` recorded. `Conflict` when any of them lost
    /// a race.
    fn complete_challenge(
        &self,
        challenge: &MfaChallenge,
        factor: &SecondFactor,
        session: &SessionRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

pub trait Store: Users + Sessions + Codes + Limits + Published + Mfa {}

impl<T: Users + Sessions + Codes + Limits + Published + Mfa> Store for T {}

/// A counter of the tokens table, as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counter {
    pub key: String,
    pub count: u64,
    pub locked_until_ms: u64,
}

impl From<&Counter> for Lockout {
    fn from(counter: &Counter) -> Self {
        Self {
            failures: crate::crypto::saturating_u32(counter.count),
            locked_until_ms: counter.locked_until_ms,
        }
    }
}

/// Whose password checks are counted and locked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockTarget {
    /// An account, against every client that is not trusted by it.
    User(UserId),
    /// A counter of the tokens table that lives until `expires_at`, created on first use: an
    /// identifier that names no account (so that a lock reveals nothing about which accounts
    /// exist), or a session re-authenticating.
    Counter { key: String, expires_at: u64 },
    /// A client address the account's owner has used (`Limits::trust_client`): its own lock,
    /// so no one else's failures keep the owner out. Only counted while the trust lasts.
    Trusted(String),
}

/// What a reservation found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Counted: the password may be checked. `lockout` is the state after counting (locked when
    /// this attempt reached the threshold: it is still checked, and a right password clears it).
    Admitted { lockout: Lockout },
    /// Locked until then (epoch milliseconds): nothing was counted, and the password must not
    /// be checked.
    Locked { until_ms: u64 },
}
