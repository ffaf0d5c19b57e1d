//! The access-token keys a warm function holds, kept in step with the signing keys' rotation.
//!
//! A Lambda instance may live for hours. Keys read once at start would leave a warm verifier
//! trusting a key the rotation (or an operator, after a leak) delisted, and a warm signer signing
//! with a key the rotation demoted. So a function re-reads its keys when its copy is older than
//! `PUBLIC_KEYS_MAX_AGE_SECONDS` (5 minutes, what the JWKS function and its clients keep too):
//! - a verifier, the published public keys (one DynamoDB read);
//! - a signer, the private key document (one Secrets Manager read), so it signs with the
//!   promoted key within that time of the promotion. The rotation keeps a demoted key listed for
//!   that time more than its tokens live ([`crate::rotation::rules`]).
//!
//! The read happens before a request is handled, once the copy is stale; if it fails, the
//! function goes on with the keys it has (an outage of the key store must not stop sign-in) and
//! tries again after another period.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::config::Config;
use crate::jwt::{AccessKeys, TokenKeys};
use crate::signing::{KeyDocument, PublicKeys};

/// What reading a key document answers: the document's JSON, or why it could not be read.
pub type DocumentFuture<'a> = Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;

/// Where a signer reads its private key document (deployed: the signing keys' secret).
pub trait DocumentSource: Send + Sync {
    fn read(&self) -> DocumentFuture<'_>;
}

/// Where a function's access-token keys come from, and so how it refreshes them.
#[derive(Clone)]
pub enum KeySource {
    /// Keys that never change: a function that neither signs nor verifies access tokens, and
    /// tests that pin their keys.
    Fixed,
    /// The published public keys (functions that verify access tokens).
    Published,
    /// The private key document (functions that issue access tokens).
    Document(Arc<dyn DocumentSource>),
}

/// The token keys in use, and when they were read.
pub struct KeyRing {
    tokens: RwLock<Arc<TokenKeys>>,
    /// When the keys in use were read (or last tried), in seconds since the epoch.
    read_at: AtomicU64,
    max_age: u64,
    source: KeySource,
}

impl KeyRing {
    /// Keys read at `now` from `source`, re-read once older than `max_age`.
    pub fn new(tokens: TokenKeys, source: KeySource, now: u64, max_age: Duration) -> Self {
        Self {
            tokens: RwLock::new(Arc::new(tokens)),
            read_at: AtomicU64::new(now),
            max_age: max_age.as_secs(),
            source,
        }
    }

    /// The same keys, read from `source` from now on, the last time at `now`.
    pub fn reading_from(self, source: KeySource, now: u64) -> Self {
        Self {
            source,
            read_at: AtomicU64::new(now),
            ..self
        }
    }

    /// The keys in use.
    pub fn current(&self) -> Arc<TokenKeys> {
        Arc::clone(
            &self
                .tokens
                .read()
                .unwrap_or_else(|poison| poison.into_inner()),
        )
    }

    /// Where the keys come from, when they are due to be read again at `now`.
    pub fn due(&self, now: u64) -> Option<&KeySource> {
        let stale = now >= self.read_at.load(Ordering::Relaxed) + self.max_age;
        (stale && !matches!(self.source, KeySource::Fixed)).then_some(&self.source)
    }

    /// Puts `access` in use from `now` (with the rest of the token keys from `config`), or,
    /// with `None` (the read failed), keeps the keys in use until the next period.
    pub fn replace(&self, config: &Config, access: Option<AccessKeys>, now: u64) {
        if let Some(access) = access {
            let tokens = Arc::new(TokenKeys::new(config, access));
            *self
                .tokens
                .write()
                .unwrap_or_else(|poison| poison.into_inner()) = tokens;
        }
        self.read_at.store(now, Ordering::Relaxed);
    }
}

/// The verifying keys of published public keys, or why there are none.
pub fn verifying(published: Option<PublicKeys>) -> Result<AccessKeys, String> {
    published
        .map(|public| AccessKeys::verifying(&public))
        .ok_or_else(|| "no keys are published".to_owned())
}

/// The signing keys of a key document's JSON, or why it is not usable.
pub fn signing(document: &str) -> Result<AccessKeys, String> {
    KeyDocument::parse(document)
        .and_then(|document| AccessKeys::signing(&document))
        .map_err(|err| err.to_string())
}
