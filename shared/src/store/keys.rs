//! Every item key, in one place: the partition keys of the three tables (and the sessions
//! table's sort key). What each item holds is in
//! `docs/storage.md`. Names of addresses and identifiers in throttling keys are keyed hashes
//! (`Deps::key_part`), never the values themselves.

use crate::domain::{Identifier, UserId};

/// A user's item.
pub fn user(id: UserId) -> String {
    format!("USER#{id}")
}

/// The record that claims a (lower-cased) email.
pub fn email(email: &str) -> String {
    format!("EMAIL#{email}")
}

/// The record that claims a (lower-cased) username.
pub fn username(username_key: &str) -> String {
    format!("USERNAME#{username_key}")
}

/// The record of an email or a username, whichever the identifier is.
pub fn identifier(identifier: &Identifier) -> String {
    match identifier {
        Identifier::Email(_) => email(&identifier.key()),
        Identifier::Username(_) => username(&identifier.key()),
    }
}

/// The published public keys and issuer (in the users table).
pub const PUBLISHED_KEYS: &str = "KEYS#public";

/// A spent refresh token.
pub fn spent_token(jti: &str) -> String {
    format!("RT#{jti}")
}

/// A revoked session (tokens table); a session's record, in its user's partition (`user`) of
/// the sessions table.
pub fn session(sid: &str) -> String {
    format!("SESSION#{sid}")
}

/// Failed sign-ins of an identifier that names no account.
pub fn lock(hashed_identifier: &str) -> String {
    format!("LOCK#{hashed_identifier}")
}

/// Failed re-authentications (password change, email change, deletion) of one session.
pub fn reauth_lock(sid: &str) -> String {
    format!("LOCK#session#{sid}")
}

/// Wrong second-factor codes of an account, from every client: apart from the password's
/// failures, which a reset clears (MF-06).
pub fn second_factor_lock(user: UserId) -> String {
    format!("LOCK#second-factor#{user}")
}

/// A client address (a keyed hash) that the user's owner has used, with its own failures.
pub fn trusted_client(user: UserId, hashed_client: &str) -> String {
    format!("TRUST#{user}#{hashed_client}")
}

/// A fixed-window counter: `name` (`login`, `forgot-client`, `forgot-address`), whose
/// requests it counts (a keyed hash), and the window's index.
pub fn rate(name: &str, hashed: &str, window: u64) -> String {
    format!("RATE#{name}#{hashed}#{window}")
}

/// Tries of one code (a keyed hash of what names it) from one client address (a keyed hash),
/// or from every client together (`all`, which no keyed hash is).
pub fn code_tries(hashed_code: &str, hashed_client: &str) -> String {
    format!("TRIES#{hashed_code}#{hashed_client}")
}

/// A cooldown: the next request of `name` for `hashed` waits.
pub fn cooldown(name: &str, hashed: &str) -> String {
    format!("COOLDOWN#{name}#{hashed}")
}

/// The user waiting to confirm an address (a keyed hash) as its new one, in the tokens table
/// until the code expires.
pub fn pending_email(hashed_email: &str) -> String {
    format!("PENDING#{hashed_email}")
}

/// A sign-in waiting for its second factor: a hash of its `mfa_token` (tokens table).
pub fn mfa_challenge(token_hash: &str) -> String {
    format!("MFA#{token_hash}")
}
