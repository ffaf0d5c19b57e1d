//! The second factor: TOTP (RFC 6238) codes, recovery codes, and the sealing of TOTP secrets
//! at rest.
//!
//! TOTP is RFC 6238 as every authenticator app implements it: HMAC-SHA1, 6 digits, 30 s steps,
//! one step of drift either way. Which step a code matched is returned, so the caller can
//! accept it only through a conditional write that moves the account's last accepted step
//! forward (a code is never accepted twice, MF-01).
//!
//! Secrets are sealed with AES-256-GCM (aws-lc-rs) under a key derived from the MFA key (its
//! own Secrets Manager secret, never `JWT_SECRET`, which rotates); the user's id is the
//! additional data, so a sealed secret copied onto another account does not open. Recovery
//! codes have 60 random bits each and are stored as HMAC-SHA256 under another derived key
//! (MF-02).

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::{hmac, rand};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};

use crate::crypto::{constant_time_eq, derive_key, hex, hmac_sha256};
use crate::domain::UserId;

/// Seconds per time step (RFC 6238's X).
pub const STEP_SECS: u64 = 30;
/// Digits per code.
pub const DIGITS: usize = 6;
/// Bytes of a new secret: 160 bits, the HMAC-SHA1 block RFC 4226 recommends.
pub const SECRET_BYTES: usize = 20;
/// Recovery codes issued at confirmation.
pub const RECOVERY_CODES: usize = 10;
/// Base32 characters per recovery code (5 bits each: 60 bits).
const RECOVERY_CHARS: usize = 12;
/// The version tag of sealed secrets, so the sealing can change without a migration.
const SEALED_V1: &str = "v1.";

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding, upper case (what authenticator apps expect).
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(BASE32[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The time step of a Unix time.
pub const fn step_at(unix: u64) -> u64 {
    unix / STEP_SECS
}

/// The 6-digit code of `secret` at time step `step` (RFC 4226's HOTP with SHA-1).
pub fn code_at(secret: &[u8], step: u64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &step.to_be_bytes());
    let mac = tag.as_ref();
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([
        mac[offset] & 0x7f,
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]);
    format!("{:06}", binary % 1_000_000)
}

/// The step a presented `code` matches at `now`: the current step or one either side, and
/// only steps after `last_step` (the last one accepted for this account). Every candidate is
/// compared, in constant time, so the answer's timing says nothing about which step matched.
pub fn matching_step(secret: &[u8], code: &str, now: u64, last_step: Option<u64>) -> Option<u64> {
    let current = step_at(now);
    let mut matched = None;
    for step in [current.saturating_sub(1), current, current + 1] {
        let fresh = last_step.is_none_or(|last| step > last);
        let equal = constant_time_eq(code_at(secret, step).as_bytes(), code.as_bytes());
        if equal && fresh && matched.is_none() {
            matched = Some(step);
        }
    }
    matched
}

/// Whether `code` has the shape of a TOTP code (six ASCII digits).
pub fn is_totp_code(code: &str) -> bool {
    code.len() == DIGITS && code.bytes().all(|b| b.is_ascii_digit())
}

/// The `otpauth://` URI authenticator apps read (often from a QR code): the issuer, the
/// account name, the secret in base32, and the parameters, all stated even where they are the
/// defaults.
pub fn otpauth_uri(issuer: &str, account: &str, secret_base32: &str) -> String {
    let issuer = percent_encode(issuer);
    let account = percent_encode(account);
    format!(
        "otpauth://totp/{issuer}:{account}?secret={secret_base32}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}"
    )
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
fn percent_encode(value: &str) -> String {
    use std::fmt::Write;
    value.bytes().fold(String::new(), |mut out, b| {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
        out
    })
}

/// Random bytes from the system's generator.
fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::fill(&mut bytes).unwrap_or_else(|_| unreachable!("the system generator does not fail"));
    bytes
}

/// A new TOTP secret.
pub fn new_secret() -> [u8; SECRET_BYTES] {
    random()
}

/// New recovery codes, as shown once to the user (`xxxx-xxxx-xxxx`, lower-case base32).
pub fn new_recovery_codes() -> Vec<SecretString> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let bytes: [u8; 8] = random();
            let text = base32(&bytes).to_ascii_lowercase();
            let chars = &text[..RECOVERY_CHARS];
            SecretString::from(format!("{}-{}-{}", &chars[..4], &chars[4..8], &chars[8..]))
        })
        .collect()
}

/// A presented recovery code in its canonical form (lower case, no separators), or `None`
/// when it cannot be one.
pub fn normalize_recovery_code(code: &str) -> Option<String> {
    let canonical: String = code
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let base32 = |c: char| c.is_ascii_lowercase() || ('2'..='7').contains(&c);
    (canonical.len() == RECOVERY_CHARS && canonical.chars().all(base32)).then_some(canonical)
}

/// The MFA key's uses: sealing TOTP secrets, and hashing recovery codes.
pub struct MfaKeys {
    sealing: RandomizedNonceKey,
    recovery: [u8; 32],
}

impl std::fmt::Debug for MfaKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MfaKeys(..)")
    }
}

impl MfaKeys {
    /// The keys derived from the deployed MFA key (`MFA_KEY`).
    pub fn new(secret: &SecretString) -> Self {
        let material = secret.expose_secret().as_bytes();
        let sealing = RandomizedNonceKey::new(&AES_256_GCM, &derive_key(material, b"totp-seal"))
            .unwrap_or_else(|_| unreachable!("a 32-byte key fits AES-256-GCM"));
        Self {
            sealing,
            recovery: derive_key(material, b"recovery-code"),
        }
    }

    /// `secret` sealed for `user`: `v1.` and the nonce, ciphertext and tag in base64url.
    pub fn seal(&self, user: UserId, secret: &[u8]) -> String {
        let mut in_out = secret.to_vec();
        let nonce = self
            .sealing
            .seal_in_place_append_tag(Aad::from(user.to_string()), &mut in_out)
            .unwrap_or_else(|_| unreachable!("sealing a short secret does not fail"));
        let mut sealed = nonce.as_ref().to_vec();
        sealed.extend_from_slice(&in_out);
        format!("{SEALED_V1}{}", URL_SAFE_NO_PAD.encode(sealed))
    }

    /// The secret sealed for `user`, or `None` when it does not open (another key, another
    /// user, tampered with).
    pub fn open(&self, user: UserId, sealed: &str) -> Option<Vec<u8>> {
        let raw = URL_SAFE_NO_PAD
            .decode(sealed.strip_prefix(SEALED_V1)?)
            .ok()?;
        if raw.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut in_out = ciphertext.to_vec();
        let plain = self
            .sealing
            .open_in_place(nonce, Aad::from(user.to_string()), &mut in_out)
            .ok()?;
        Some(plain.to_vec())
    }

    /// The stored form of a recovery code of `user` (canonical form, see
    /// [`normalize_recovery_code`]).
    pub fn recovery_hash(&self, user: UserId, canonical: &str) -> String {
        hex(&hmac_sha256(
            &self.recovery,
            &[user.to_string().as_bytes(), b":", canonical.as_bytes()],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B's SHA-1 seed.
    const RFC_SEED: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc_6238_sha1_test_vectors() {
        // MF-01: appendix B, SHA-1 rows; the RFC prints 8 digits, of which a 6-digit code is
        // the last six.
        for (time, eight_digits) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(
                code_at(RFC_SEED, step_at(time)),
                eight_digits[2..],
                "T = {time}"
            );
        }
    }

    #[test]
    fn rfc_4226_hotp_test_vectors() {
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        for (counter, code) in expected.iter().enumerate() {
            assert_eq!(code_at(RFC_SEED, counter as u64), *code);
        }
    }

    #[test]
    fn base32_matches_rfc_4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(plain.as_bytes()), encoded);
        }
        assert_eq!(base32(&new_secret()).len(), 32);
    }

    #[test]
    fn one_step_of_drift_and_no_step_twice() {
        let now = 1_111_111_111;
        let current = step_at(now);
        for step in [current - 1, current, current + 1] {
            let code = code_at(RFC_SEED, step);
            assert_eq!(matching_step(RFC_SEED, &code, now, None), Some(step));
            assert_eq!(
                matching_step(RFC_SEED, &code, now, Some(step)),
                None,
                "the step already accepted"
            );
            assert_eq!(matching_step(RFC_SEED, &code, now, Some(step + 1)), None);
        }
        for step in [current - 2, current + 2] {
            let code = code_at(RFC_SEED, step);
            assert_eq!(matching_step(RFC_SEED, &code, now, None), None, "{step}");
        }
        assert_eq!(matching_step(RFC_SEED, "12345", now, None), None);
        assert!(is_totp_code("012345"));
        assert!(!is_totp_code("01234a"));
        assert!(!is_totp_code("0123456"));
    }

    #[test]
    fn the_uri_names_issuer_account_and_parameters() {
        let uri = otpauth_uri("My App", "alice", "JBSWY3DPEHPK3PXP");
        assert_eq!(
            uri,
            "otpauth://totp/My%20App:alice?secret=JBSWY3DPEHPK3PXP&issuer=My%20App&algorithm=SHA1&digits=6&period=30"
        );
    }

    #[test]
    fn recovery_codes_are_distinct_and_normalize() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        let mut seen = std::collections::BTreeSet::new();
        for code in &codes {
            let code = code.expose_secret();
            assert_eq!(code.len(), 14);
            let canonical = normalize_recovery_code(code).expect("a recovery code");
            assert_eq!(
                normalize_recovery_code(&code.to_uppercase().replace('-', " ")),
                Some(canonical.clone())
            );
            assert!(seen.insert(canonical));
        }
        assert_eq!(
            normalize_recovery_code("abcd-efgh-ijk1"),
            None,
            "1 is not base32"
        );
        assert_eq!(normalize_recovery_code("abcd-efgh"), None);
    }

    #[test]
    fn sealed_secrets_open_only_for_their_user_and_key() {
        // MF-02: encrypted at rest, bound to the account.
        let keys = MfaKeys::new(&SecretString::from("k".repeat(40)));
        let (alice, bob) = (UserId::new(), UserId::new());
        let secret = new_secret();
        let sealed = keys.seal(alice, &secret);
        assert!(sealed.starts_with("v1."));
        assert!(!sealed.contains(&base32(&secret)));
        assert_ne!(sealed, keys.seal(alice, &secret), "a fresh nonce each time");
        assert_eq!(keys.open(alice, &sealed).as_deref(), Some(&secret[..]));
        assert_eq!(keys.open(bob, &sealed), None);
        let other = MfaKeys::new(&SecretString::from("m".repeat(40)));
        assert_eq!(other.open(alice, &sealed), None);
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).expect("ascii");
        assert_eq!(keys.open(alice, &tampered), None);
        assert_eq!(keys.open(alice, "v1."), None);
        assert_eq!(keys.open(alice, "garbage"), None);
    }

    #[test]
    fn recovery_hashes_are_keyed_and_per_user() {
        let keys = MfaKeys::new(&SecretString::from("k".repeat(40)));
        let user = UserId::new();
        let hash = keys.recovery_hash(user, "abcdefghijkl");
        assert_eq!(hash.len(), 64);
        assert_eq!(hash, keys.recovery_hash(user, "abcdefghijkl"));
        assert_ne!(hash, keys.recovery_hash(UserId::new(), "abcdefghijkl"));
        let other = MfaKeys::new(&SecretString::from("m".repeat(40)));
        assert_ne!(hash, other.recovery_hash(user, "abcdefghijkl"));
    }
}
