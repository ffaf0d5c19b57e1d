//! Brute-force and flood limits (LG-04, LG-05, FP-05): the pure arithmetic. The counters live in
//! DynamoDB (see `store`), keyed on what API Gateway saw as the client address, never on
//! `X-Forwarded-For`.

/// Whole seconds from `now_ms` until `until_ms`, rounded up (a `Retry-After`), at least 1.
pub fn retry_after_secs(until_ms: u64, now_ms: u64) -> u64 {
    until_ms.saturating_sub(now_ms).div_ceil(1000).max(1)
}

/// The longest an account stays locked.
pub const MAX_LOCK_SECS: u64 = 900;

/// How long failures against an identifier that names no account, or of a session
/// re-authenticating, are remembered.
pub const FAILURE_MEMORY_SECS: u64 = 24 * 3600;

/// How long a client address the owner used (a right password, a reset) keeps a lock of its
/// own, apart from the account's.
pub const TRUSTED_CLIENT_SECS: u64 = 30 * 24 * 3600;

/// How long an account is locked after its `failures`-th consecutive failed sign-in: nothing
/// below the threshold, then 1 s, doubling with each further failure, capped at 15 minutes.
pub fn lock_secs(failures: u32, threshold: u32) -> Option<u64> {
    let beyond = failures.checked_sub(threshold)?;
    Some(
        1u64.checked_shl(beyond)
            .unwrap_or(u64::MAX)
            .min(MAX_LOCK_SECS),
    )
}

/// A fixed time window: its index (for keys) and its end (for `Retry-After` and TTLs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub index: u64,
    pub end: u64,
}

impl Window {
    pub fn at(now: u64, length_secs: u64) -> Self {
        let length = length_secs.max(1);
        let index = now / length;
        Self {
            index,
            end: (index + 1) * length,
        }
    }
}

/// One limit a request must fit under, checked and consumed atomically with the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quota {
    /// At most `limit` requests counted under `key` until `resets_at` (a fixed window; the key
    /// names the window, so a new window starts from zero).
    Counter {
        key: String,
        limit: u32,
        resets_at: u64,
    },
    /// At most one request under `key` until `until`.
    Cooldown { key: String, until: u64 },
}

impl Quota {
    pub fn key(&self) -> &str {
        match self {
            Self::Counter { key, .. } | Self::Cooldown { key, .. } => key,
        }
    }
}

/// A key part that names an email address or client without storing it in the clear.
pub fn key_part(key: &[u8; 32], value: &str) -> String {
    crate::crypto::hex(&crate::crypto::hmac_sha256(key, &[value.as_bytes()])[..16])
}

/// The client a source address counts as: an IPv4 address itself, an IPv6 address its /64
/// (one subscriber's network: a client given a /64 has 2^64 addresses to rotate through), an
/// IPv4-mapped IPv6 address its IPv4 address. Anything unparsable counts as itself.
pub fn client_network(source_ip: &str) -> String {
    match source_ip.trim().parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => v4.to_string(),
        Ok(std::net::IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                format!("{}/64", std::net::Ipv6Addr::from(network))
            }
        },
        Err(_) => source_ip.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_start_at_the_threshold_double_and_cap() {
        assert_eq!(lock_secs(4, 5), None);
        assert_eq!(lock_secs(5, 5), Some(1));
        assert_eq!(lock_secs(6, 5), Some(2));
        assert_eq!(lock_secs(9, 5), Some(16));
        assert_eq!(lock_secs(15, 5), Some(900));
        assert_eq!(lock_secs(500, 5), Some(900), "no overflow");
    }

    #[test]
    fn windows_are_aligned() {
        assert_eq!(Window::at(0, 300), Window { index: 0, end: 300 });
        assert_eq!(Window::at(299, 300), Window { index: 0, end: 300 });
        assert_eq!(Window::at(300, 300), Window { index: 1, end: 600 });
    }

    #[test]
    fn an_ipv6_client_is_its_64_and_an_ipv4_client_its_address() {
        assert_eq!(client_network("203.0.113.7"), "203.0.113.7");
        assert_eq!(client_network("::ffff:203.0.113.7"), "203.0.113.7");
        let a = client_network("2001:db8:1:2:aaaa:bbbb:cccc:dddd");
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_eq!(
            a,
            client_network("2001:db8:1:2::1"),
            "same /64, same client"
        );
        assert_ne!(
            a,
            client_network("2001:db8:1:3::1"),
            "another /64, another client"
        );
        assert_eq!(client_network("unknown"), "unknown");
    }

    #[test]
    fn key_parts_hide_the_value() {
        let key = [7u8; 32];
        let part = key_part(&key, "alice@example.com");
        assert_eq!(part.len(), 32);
        assert!(!part.contains("alice"));
        assert_eq!(part, key_part(&key, "alice@example.com"));
        assert_ne!(part, key_part(&[8u8; 32], "alice@example.com"));
    }
}
