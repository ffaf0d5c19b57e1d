//! Time as a dependency, so that expiry, idle timeouts and lockouts are testable.

use time::OffsetDateTime;

/// Tolerance for clock skew on `exp`, `nbf` and `iat` (JWT-06: at most 30 s).
pub const LEEWAY_SECS: u64 = 30;

pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;

    /// Seconds since the Unix epoch, as JWT `iat`/`exp` and DynamoDB TTL attributes use.
    fn unix(&self) -> i64 {
        self.now().unix_timestamp()
    }
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> OffsetDateTime {
        (**self).now()
    }
}
