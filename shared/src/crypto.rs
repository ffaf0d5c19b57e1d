//! The small cryptographic helpers the service shares: HMAC-SHA256 over several parts, key
//! derivation from the deployed secret, lower-case hex, constant-time comparison, and the
//! saturating count conversion that stored counters need. Each is written once, here.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// HMAC-SHA256 of the concatenation of `parts` under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// HMAC-SHA256(secret, "auth/" + label): one deployed secret, an independent key per use
/// (JWT-05).
pub fn derive_key(secret: &[u8], label: &[u8]) -> [u8; 32] {
    hmac_sha256(secret, &[b"auth/", label])
}

/// Lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// A stored count as the `u32` the rules compare, saturating rather than wrapping.
pub fn saturating_u32(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn derived_keys_differ_by_label_and_by_secret() {
        let a = derive_key(b"secret one", b"access");
        assert_ne!(a, derive_key(b"secret one", b"refresh"));
        assert_ne!(a, derive_key(b"secret two", b"access"));
        assert_eq!(a, hmac_sha256(b"secret one", &[b"auth/access"]));
    }

    #[test]
    fn comparisons_and_conversions() {
        assert_eq!(hex(&[0x00, 0xab, 0x0f]), "00ab0f");
        assert!(constant_time_eq(b"same", b"same"));
        assert!(!constant_time_eq(b"same", b"sane"));
        assert!(!constant_time_eq(b"same", b"same!"));
        assert_eq!(saturating_u32(7), 7);
        assert_eq!(saturating_u32(u64::MAX), u32::MAX);
    }
}
