//! Argon2id password hashing (PW-01..PW-05, LG-02). Hashing runs on the blocking pool so that a
//! 19 MiB, CPU-bound computation never stalls the runtime's reactor.

#[cfg(any(test, feature = "test-util"))]
use std::sync::Arc;
#[cfg(any(test, feature = "test-util"))]
use std::sync::atomic::{AtomicU64, Ordering};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};

use crate::error::ApiError;

/// A hash of a random, discarded password at the current parameters. Verifying an unknown
/// user's attempt against it costs what a real verification costs, so the answer's timing does
/// not tell whether the account exists (LG-02). A unit test keeps its parameters current.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$5bkrK0CqEDf9XBNjjuwVaA$NtPVF/jfXgyQDsiLW9gH0qvKm4B/fS/+uXd54qd/kfk";

/// Upper bounds on the parameters of a stored hash, so that a corrupted or planted record cannot
/// make a verification allocate gigabytes (PW-04).
const MAX_M_COST_KIB: u32 = 256 * 1024;
const MAX_T_COST: u32 = 10;
const MAX_P_COST: u32 = 4;

#[derive(Clone)]
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    #[cfg(any(test, feature = "test-util"))]
    counters: Counters,
}

/// How many hashes and verifications a hasher has run, for the tests of what a request costs
/// (the `test-util` feature): a release build counts nothing.
#[cfg(any(test, feature = "test-util"))]
#[derive(Clone, Default)]
struct Counters {
    verifications: Arc<AtomicU64>,
    hashes: Arc<AtomicU64>,
}

impl Default for PasswordHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl PasswordHasher {
    /// Argon2id v19 at the OWASP parameters: 19 MiB, 2 iterations, 1 lane (PW-01).
    pub fn new() -> Self {
        let params = Params::new(19 * 1024, 2, 1, Some(32)).unwrap_or_default();
        Self {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            #[cfg(any(test, feature = "test-util"))]
            counters: Counters::default(),
        }
    }

    /// Hashes a new password into a PHC string with a fresh random salt (PW-02).
    pub async fn hash(&self, password: &str) -> Result<String, ApiError> {
        #[cfg(any(test, feature = "test-util"))]
        self.counters.hashes.fetch_add(1, Ordering::Relaxed);
        let argon2 = self.argon2.clone();
        let password = SecretString::from(password);
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2
                .hash_password(password.expose_secret().as_bytes(), &salt)
                .map(|hash| hash.to_string())
        })
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(|err| {
            tracing::error!(error = %err, "password hashing failed");
            ApiError::Internal
        })
    }

    /// Verifies `attempt` against a stored hash, or against the dummy hash when there is no user,
    /// so that both paths spend exactly one Argon2 verification.
    pub async fn verify(&self, attempt: &str, stored: Option<&str>) -> bool {
        #[cfg(any(test, feature = "test-util"))]
        self.counters.verifications.fetch_add(1, Ordering::Relaxed);
        let argon2 = self.argon2.clone();
        let attempt = SecretString::from(attempt);
        let known = stored.is_some();
        let stored = stored.unwrap_or(DUMMY_HASH).to_owned();
        let matched = tokio::task::spawn_blocking(move || {
            let Ok(hash) = PasswordHash::new(&stored) else {
                tracing::error!("a stored password hash is not a PHC string");
                return false;
            };
            if !within_bounds(&hash) {
                tracing::error!("a stored password hash has out-of-bounds parameters");
                return false;
            }
            // Verification uses the parameters embedded in the stored hash (PW-03).
            argon2
                .verify_password(attempt.expose_secret().as_bytes(), &hash)
                .is_ok()
        })
        .await
        .unwrap_or(false);
        known && matched
    }

    /// Whether a stored hash was made with other parameters than the current ones (PW-05).
    pub fn needs_rehash(&self, stored: &str) -> bool {
        let Ok(hash) = PasswordHash::new(stored) else {
            return true;
        };
        let current = self.argon2.params();
        hash.algorithm != Algorithm::Argon2id.ident()
            || Params::try_from(&hash).map_or(true, |p| {
                p.m_cost() != current.m_cost()
                    || p.t_cost() != current.t_cost()
                    || p.p_cost() != current.p_cost()
            })
    }

    /// How many verifications this hasher has run (for tests of the timing-equalisation rule).
    #[cfg(any(test, feature = "test-util"))]
    pub fn verification_count(&self) -> u64 {
        self.counters.verifications.load(Ordering::Relaxed)
    }

    /// How many new hashes this hasher has made (for tests of what a throttled request costs).
    #[cfg(any(test, feature = "test-util"))]
    pub fn hash_count(&self) -> u64 {
        self.counters.hashes.load(Ordering::Relaxed)
    }
}

fn within_bounds(hash: &PasswordHash<'_>) -> bool {
    hash.algorithm == Algorithm::Argon2id.ident()
        && Params::try_from(hash).is_ok_and(|p| {
            p.m_cost() <= MAX_M_COST_KIB && p.t_cost() <= MAX_T_COST && p.p_cost() <= MAX_P_COST
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_at_owasp_parameters_with_unique_salts() {
        let hasher = PasswordHasher::new();
        let a = hasher.hash("correct horse battery").await.expect("hash");
        let b = hasher.hash("correct horse battery").await.expect("hash");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "PW-02: a fresh salt per hash");
        assert!(hasher.verify("correct horse battery", Some(&a)).await);
        assert!(!hasher.verify("correct horse batterY", Some(&a)).await);
        assert!(!hasher.needs_rehash(&a));
    }

    #[tokio::test]
    async fn unknown_users_spend_one_verification_and_never_match() {
        let hasher = PasswordHasher::new();
        assert!(!hasher.verify("anything", None).await);
        assert_eq!(hasher.verification_count(), 1);
    }

    #[test]
    fn dummy_hash_uses_the_current_parameters() {
        assert!(!PasswordHasher::new().needs_rehash(DUMMY_HASH));
    }

    #[tokio::test]
    async fn weaker_hashes_still_verify_and_ask_for_a_rehash() {
        // PW-03 and PW-05: stored parameters are honoured, and flagged for upgrade.
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(7168, 5, 1, None).expect("params"),
        );
        let salt = SaltString::generate(&mut OsRng);
        let stored = weak
            .hash_password(b"old password", &salt)
            .expect("hash")
            .to_string();
        let hasher = PasswordHasher::new();
        assert!(hasher.verify("old password", Some(&stored)).await);
        assert!(hasher.needs_rehash(&stored));
    }

    #[tokio::test]
    async fn out_of_bounds_parameters_are_refused_before_hashing() {
        // PW-04: m=4 GiB would be a denial of service.
        let planted = "$argon2id$v=19$m=4194304,t=2,p=1$5bkrK0CqEDf9XBNjjuwVaA$NtPVF/jfXgyQDsiLW9gH0qvKm4B/fS/+uXd54qd/kfk";
        assert!(!PasswordHasher::new().verify("x", Some(planted)).await);
        assert!(!PasswordHasher::new().verify("x", Some("not a hash")).await);
    }
}
