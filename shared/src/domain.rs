//! Validated values (docs/requirements.md: LG-03, PW-08, PW-09). A value of these types has
//! passed its checks, so the rest of the code never re-validates.

use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

/// A user id (a random UUID). It is also the JWT `sub`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct UserId(Uuid);

impl UserId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Uuid::try_parse(raw).ok().map(Self)
    }
}

impl Default for UserId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An email address, trimmed and lower-cased: one address, one account, whatever its case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Parses an address into its one stored form, so that two spellings of one mailbox are one
    /// account: lower case; the local part in Unicode NFC (a precomposed and a decomposed `é`
    /// are the same letter); the domain as IDNA (UTS 46) A-labels, as mail is delivered
    /// (`bücher.example` is `xn--bcher-kva.example`).
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let lowered = raw.trim().to_lowercase();
        let Some((local, domain)) = lowered.rsplit_once('@') else {
            return Err("is not an email address");
        };
        let local = icu_normalizer::ComposingNormalizerBorrowed::new_nfc().normalize(local);
        let domain = idna::domain_to_ascii(domain).map_err(|_| "is not an email address")?;
        let email = format!("{local}@{domain}");
        let (local, domain) = (local.as_ref(), domain.as_str());
        let valid_local = !local.is_empty()
            && local.len() <= 64
            && !local.contains('@')
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..");
        let valid_domain = domain.len() <= 253
            && domain.contains('.')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        let printable = email
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !"<>()[]\\,;:\"".contains(c));
        if email.len() <= 254 && valid_local && valid_domain && printable {
            Ok(Self(email))
        } else {
            Err("is not an email address")
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A username: 3 to 32 letters, digits, `_`, `.` or `-`. It never contains `@`, so it can never
/// equal an email address (LG-03). Kept as typed; compared by its lower-cased [`Username::key`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let name = raw.trim();
        let len = name.chars().count();
        if !(3..=32).contains(&len) {
            return Err("must be 3 to 32 characters");
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return Err("may contain only letters, digits, '_', '.' and '-'");
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-insensitive uniqueness key.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

/// What a user typed to sign in: an email if it has an `@`, else a username.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identifier {
    Email(Email),
    Username(Username),
}

impl Identifier {
    /// The normalised form: the lower-cased email or username.
    pub fn key(&self) -> String {
        match self {
            Self::Email(email) => email.as_str().to_owned(),
            Self::Username(username) => username.key(),
        }
    }

    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        if raw.contains('@') {
            Email::parse(raw).map(Self::Email)
        } else {
            Username::parse(raw).map(Self::Username)
        }
    }
}

/// A full name: optional, at most 128 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullName(String);

impl FullName {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > 128 {
            return Err("must be 1 to 128 characters");
        }
        if name.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 128;

/// Common passwords that would otherwise fit the policy, lower-cased (PW-09).
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../data/common-passwords.txt")
        .lines()
        .collect()
});

/// A new password that meets the policy (PW-08, PW-09). Kept secret: it never reaches a log.
/// Hashed exactly as received: no trimming, no case change. (Its `Debug` is the secret's:
/// redacted.)
#[derive(Debug)]
pub struct NewPassword(SecretString);

impl NewPassword {
    /// Checks length and the common-password list, and refuses the account's own identifiers.
    pub fn parse(raw: &str, identifiers: &[&str]) -> Result<Self, &'static str> {
        let len = raw.chars().count();
        if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&len) {
            return Err("must be 8 to 128 characters");
        }
        let lowered = raw.to_lowercase();
        if COMMON_PASSWORDS.contains(lowered.as_str()) {
            return Err("is too common; choose a less guessable password");
        }
        if identifiers
            .iter()
            .any(|id| !id.is_empty() && lowered == id.to_lowercase())
        {
            return Err("must not be your username or email");
        }
        Ok(Self(SecretString::from(raw)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// A password typed to sign in or re-authenticate. Only its length is bounded (so that hashing
/// work stays bounded): a policy change must never lock out an existing password.
#[derive(Debug)]
pub struct PasswordAttempt(SecretString);

impl PasswordAttempt {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        if raw.is_empty() || raw.chars().count() > MAX_PASSWORD_CHARS {
            return Err("must be 1 to 128 characters");
        }
        Ok(Self(SecretString::from(raw)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// A user as stored. `password_hash` is a PHC string; `token_version` rises with every
/// revocation point (global logout, password change or reset), refusing older tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: UserId,
    pub username: Username,
    pub email: Email,
    pub full_name: Option<FullName>,
    pub password_hash: String,
    pub token_version: u64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub lockout: Lockout,
    pub reset_code: Option<StoredCode>,
    /// Whether the owner of `email` has shown a code mailed to it (or reset the password).
    pub email_verified: bool,
    /// The pending email verification code: for `email` while it is unverified, or for
    /// `pending_email` (a code is bound to the address it was mailed to).
    pub verify_code: Option<StoredCode>,
    /// The address an email change waits to confirm: `email` stays until its code comes back.
    pub pending_email: Option<Email>,
    /// TOTP, pending (set up, not yet confirmed) or enabled.
    pub totp: Option<TotpState>,
}

/// A user's TOTP as stored: the secret only sealed (`totp::MfaKeys`), recovery codes only
/// hashed.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpState {
    pub sealed_secret: String,
    /// Whether a first code confirmed it: only then does sign-in ask for a code.
    pub enabled: bool,
    /// The last time step accepted: only later ones are (replay, MF-01).
    pub last_step: Option<u64>,
    /// The hashes of the recovery codes not yet spent.
    pub recovery_codes: Vec<String>,
    /// The code the notice that turned it on mailed to the account's address: whoever has it
    /// turns TOTP off (MF-07). Only while enabled.
    pub undo: Option<StoredCode>,
    /// Until when a secret not confirmed yet may be (seconds since the epoch); after it, the
    /// setup is void and must start again. None once enabled.
    pub pending_until: Option<u64>,
}

impl fmt::Debug for TotpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpState")
            .field("enabled", &self.enabled)
            .field("last_step", &self.last_step)
            .field("recovery_codes", &self.recovery_codes.len())
            .finish_non_exhaustive()
    }
}

impl UserRecord {
    /// Whether sign-in asks for a second factor.
    pub fn mfa_enabled(&self) -> bool {
        self.totp.as_ref().is_some_and(|totp| totp.enabled)
    }
}

impl UserRecord {
    /// A new user, with no failed sign-ins, no codes and an unverified address.
    pub fn new(
        username: Username,
        email: Email,
        full_name: Option<FullName>,
        password_hash: String,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            id: UserId::new(),
            username,
            email,
            full_name,
            password_hash,
            token_version: 0,
            created_at: now,
            updated_at: now,
            lockout: Lockout::default(),
            reset_code: None,
            email_verified: false,
            verify_code: None,
            pending_email: None,
            totp: None,
        }
    }
}

/// Failed sign-ins since the last success, and until when the account is locked (epoch s).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lockout {
    pub failures: u32,
    /// Epoch milliseconds: a lock of one second is one second, whenever in a second it began.
    pub locked_until_ms: u64,
}

/// A pending mailed code (password reset, email verification): only its keyed hash is stored
/// (FP-04).
#[derive(Clone, PartialEq, Eq)]
pub struct StoredCode {
    pub hash: String,
    pub expires_at: u64,
}

impl fmt::Debug for StoredCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredCode")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("token_version", &self.token_version)
            .finish_non_exhaustive()
    }
}

/// The public view of a user: the `User` schema of openapi.yaml. Never carries the hash.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub email: String,
    pub full_name: Option<String>,
    pub email_verified: bool,
    pub pending_email: Option<String>,
    pub mfa_enabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<&UserRecord> for User {
    fn from(record: &UserRecord) -> Self {
        Self {
            id: record.id,
            username: record.username.as_str().to_owned(),
            email: record.email.as_str().to_owned(),
            full_name: record.full_name.as_ref().map(|n| n.as_str().to_owned()),
            email_verified: record.email_verified,
            pending_email: record.pending_email.as_ref().map(|e| e.as_str().to_owned()),
            mfa_enabled: record.mfa_enabled(),
            created_at: record.created_at,
            updated_at: record.updated_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Alice@Example.COM ").map(|e| e.0),
            Ok("alice@example.com".into())
        );
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@localhost",
            "a b@example.com",
            "a@b@c.com",
            "alice@exa_mple.com",
            "alice@-example.com",
            ".alice@example.com",
            "a..b@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn one_mailbox_has_one_form_whatever_its_spelling() {
        let composed = Email::parse("Ren\u{e9}@B\u{fc}cher.Example").expect("valid");
        let decomposed = Email::parse("rene\u{301}@bu\u{308}cher.example").expect("valid");
        let ascii = Email::parse("ren\u{e9}@xn--bcher-kva.example").expect("valid");
        assert_eq!(composed, decomposed, "NFC: one é, precomposed or not");
        assert_eq!(composed, ascii, "IDNA: the domain as A-labels");
        assert_eq!(composed.as_str(), "ren\u{e9}@xn--bcher-kva.example");
        assert_eq!(
            Email::parse(composed.as_str()).as_ref(),
            Ok(&composed),
            "canonical"
        );
        for bad in ["a@-b.example", "a@xn--.example", "a@b\u{200b}c..example"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usernames_follow_the_rule_and_never_hold_an_at_sign() {
        assert!(Username::parse("Alice_01.x-y").is_ok());
        assert_eq!(
            Username::parse("Alice").map(|u| u.key()),
            Ok("alice".into())
        );
        for bad in [
            "ab",
            &"a".repeat(33),
            "bob@x.com",
            "has space",
            "émile",
            "semi;colon",
        ] {
            assert!(Username::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(
            Identifier::parse("ALICE@example.com"),
            Ok(Identifier::Email(_))
        ));
        assert!(matches!(
            Identifier::parse("alice"),
            Ok(Identifier::Username(_))
        ));
    }

    #[test]
    fn passwords_never_print() {
        let new = NewPassword::parse("correct horse battery", &[]).expect("valid");
        let attempt = PasswordAttempt::parse("correct horse battery").expect("valid");
        for printed in [format!("{new:?}"), format!("{attempt:?}")] {
            assert!(!printed.contains("horse"), "{printed}");
            assert!(printed.contains("REDACTED"), "{printed}");
        }
    }

    #[test]
    fn password_policy() {
        // PW-08: length counted in characters; spaces and any Unicode allowed; no composition rules.
        assert!(NewPassword::parse("seven77", &[]).is_err());
        assert!(NewPassword::parse("correct horse battery", &[]).is_ok());
        assert!(NewPassword::parse("ünïcödé pässwörd 🔑", &[]).is_ok());
        assert!(NewPassword::parse(&"x".repeat(129), &[]).is_err());
        assert!(
            NewPassword::parse(&"é".repeat(128), &[]).is_ok(),
            "128 characters, 256 bytes"
        );
        // PW-09: the common list, compared case-insensitively.
        for common in ["password1234", "Password1", "12345678", "QWERTYUIOP"] {
            assert_eq!(
                NewPassword::parse(common, &[]).err(),
                Some("is too common; choose a less guessable password"),
                "{common}"
            );
        }
        assert!(NewPassword::parse("Alice_Wonderland", &["alice_wonderland"]).is_err());
        assert!(
            COMMON_PASSWORDS.len() > 3000,
            "ASVS L1 asks for at least the top 3000"
        );
    }

    #[test]
    fn secrets_never_print() {
        let p = NewPassword::parse("correct horse battery", &[]).expect("valid");
        assert!(!format!("{p:?}").contains("horse"));
        let a = PasswordAttempt::parse("hunter2").expect("valid");
        assert!(!format!("{a:?}").contains("hunter2"));
        assert!(PasswordAttempt::parse("").is_err());
    }

    #[test]
    fn full_names() {
        assert_eq!(
            FullName::parse(" Ada Lovelace ").map(|n| n.0),
            Ok("Ada Lovelace".into())
        );
        assert!(FullName::parse("").is_err());
        assert!(FullName::parse("bad\u{0}name").is_err());
    }
}
