//! Mailed codes, for password resets and email verification (FP-02, FP-04): 8 digits from the
//! operating system's CSPRNG, stored only as an HMAC keyed with a secret derived from
//! `JWT_SECRET` for that use alone and bound to the user, compared in constant time.

use rand::Rng;
use secrecy::{ExposeSecret, SecretString};

use crate::config::Config;
use crate::crypto;
use crate::domain::UserId;

pub const CODE_DIGITS: usize = 8;

pub struct MailedCodes {
    key: [u8; 32],
}

impl MailedCodes {
    /// Password-reset codes.
    pub fn new(config: &Config) -> Self {
        Self {
            key: config.derived_key(b"reset-code"),
        }
    }

    /// Email verification codes: another key, so a code of one kind never matches the other.
    pub fn for_email(config: &Config) -> Self {
        Self {
            key: config.derived_key(b"email-code"),
        }
    }

    /// A fresh code.
    pub fn generate(&self) -> SecretString {
        let n: u32 = rand::rngs::OsRng.gen_range(0..100_000_000);
        SecretString::from(format!("{n:0width$}", width = CODE_DIGITS))
    }

    /// The stored form of `code` for `user`.
    pub fn hash(&self, user: UserId, code: &str) -> String {
        let user = user.to_string();
        crypto::hex(&crypto::hmac_sha256(
            &self.key,
            &[user.as_bytes(), b":", code.as_bytes()],
        ))
    }

    /// The stored form of `code` mailed to `address` for `user`: such a code proves control of
    /// that address only (email verification).
    pub fn hash_for(&self, user: UserId, address: &str, code: &str) -> String {
        self.hash(user, &format!("{address}:{code}"))
    }

    /// Whether `code`, presented with `address`, is the one whose stored form is `stored`.
    pub fn matches_for(&self, user: UserId, address: &str, code: &str, stored: &str) -> bool {
        self.matches(user, &format!("{address}:{code}"), stored)
    }

    /// Whether `code` is the one whose stored form is `stored`, in constant time.
    pub fn matches(&self, user: UserId, code: &str, stored: &str) -> bool {
        let computed = self.hash(user, code);
        crypto::constant_time_eq(computed.as_bytes(), stored.as_bytes())
    }

    /// Whether `raw` has the shape of a code (8 ASCII digits), before any lookup.
    pub fn is_well_formed(raw: &str) -> bool {
        raw.len() == CODE_DIGITS && raw.bytes().all(|b| b.is_ascii_digit())
    }
}

/// A code as a user would type it, exposed only to hash and mail it.
pub fn expose(code: &SecretString) -> &str {
    code.expose_secret()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::config;

    #[test]
    fn codes_are_eight_digits_and_spread_evenly() {
        let codes = MailedCodes::new(&config());
        let mut first_digit = [0u32; 10];
        for _ in 0..10_000 {
            let code = codes.generate();
            assert!(
                MailedCodes::is_well_formed(expose(&code)),
                "{}",
                expose(&code).len()
            );
            first_digit[usize::from(expose(&code).as_bytes()[0] - b'0')] += 1;
        }
        // Chi-square over the leading digit, 9 degrees of freedom: 27.9 is p = 0.001.
        let chi: f64 = first_digit
            .iter()
            .map(|&o| (f64::from(o) - 1000.0).powi(2) / 1000.0)
            .sum();
        assert!(chi < 27.9, "{first_digit:?}");
    }

    #[test]
    fn stored_codes_are_keyed_bound_to_the_user_and_not_the_code() {
        let codes = MailedCodes::new(&config());
        let (alice, bob) = (UserId::new(), UserId::new());
        let stored = codes.hash(alice, "12345678");
        assert!(!stored.contains("12345678"));
        assert!(codes.matches(alice, "12345678", &stored));
        assert!(!codes.matches(alice, "12345679", &stored));
        assert!(
            !codes.matches(bob, "12345678", &stored),
            "bound to its user"
        );
        let other_key = crate::testing::config_with(&[(
            "HASH_KEY",
            "an-entirely-different-secret-of-32+bytes",
        )]);
        assert!(
            !MailedCodes::new(&other_key).matches(alice, "12345678", &stored),
            "keyed"
        );
        assert!(!MailedCodes::is_well_formed("1234567"));
        assert!(!MailedCodes::is_well_formed("1234567a"));
        assert!(
            !MailedCodes::is_well_formed("١٢٣٤٥٦٧٨"),
            "ASCII digits only"
        );
    }
}
