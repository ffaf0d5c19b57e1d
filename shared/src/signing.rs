//! The RSA keys that sign access tokens (the README's "Tokens other services verify"; RL-04).
//!
//! Two documents describe them:
//! - [`KeyDocument`], the private one, kept in Secrets Manager and rewritten only by the rotation
//!   function: the `previous`, `current` and `next` keys (PKCS#8), and the issuer.
//! - [`PublicKeys`], the published one: the issuer and the public half of every key in the
//!   private document, as JWKs. The rotation function writes it where the verifying functions and
//!   the JWKS endpoint read it, so none of them ever holds a private key.
//!
//! Rotation turns `next` into `current` and `current` into `previous`, and makes a new `next`.
//! A key is listed for at least [`RotationRules::listed_before_signing`] (API Gateway caches a
//! JWKS for 2 hours) before it signs, and stays listed until every token it signed has expired.
//! Key generation, signing and the key format all come from aws-lc-rs.

use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::DecodingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long API Gateway's JWT authorizer may keep a JWKS: a key is listed at least this long
/// before it signs.
pub const API_GATEWAY_KEY_CACHE: Duration = Duration::from_secs(2 * 60 * 60);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("the key document is not valid: {0}")]
    Malformed(&'static str),
    #[error("key generation failed")]
    Generation,
}

/// Why a rotation was refused; the rotation fails and may be tried again later.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RotationRefused {
    #[error(
        "the next key has been listed for {listed_secs} s, less than the {needed_secs} s it must be listed before it signs"
    )]
    NextListedTooBriefly { listed_secs: u64, needed_secs: u64 },
    #[error(
        "tokens signed by the previous key may live until {until}; it must stay listed until then"
    )]
    PreviousStillNeeded { until: u64 },
}

/// The timing rules of a rotation.
#[derive(Debug, Clone, Copy)]
pub struct RotationRules {
    /// A new key is listed at least this long before it signs.
    pub listed_before_signing: Duration,
    /// A key that stopped signing stays listed at least this long (the access token lifetime
    /// and the verifiers' leeway).
    pub signed_tokens_live: Duration,
}

/// One stored key. Its `Debug` never shows the private key.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredKey {
    pub kid: String,
    /// When it was made, and so first listed (seconds since the epoch).
    pub created_at: u64,
    /// The public half, as the JWK's base64url modulus and exponent: publishing the keys needs
    /// no private key parsed.
    n: String,
    e: String,
    /// The private key: PKCS#8 DER, base64url.
    pkcs8: String,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

impl StoredKey {
    /// A new RSA-2048 key.
    pub fn generate(now: u64) -> Result<Self, KeyError> {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Generation)?;
        let pkcs8 = pair.as_der().map_err(|_| KeyError::Generation)?;
        let (n, e) = public_jwk_parts(&pair);
        Ok(Self {
            kid: thumbprint(&n, &e),
            created_at: now,
            n,
            e,
            pkcs8: B64.encode(pkcs8.as_ref()),
        })
    }

    fn key_pair(&self) -> Result<RsaKeyPair, KeyError> {
        let der = B64
            .decode(&self.pkcs8)
            .map_err(|_| KeyError::Malformed("private key encoding"))?;
        let pair = RsaKeyPair::from_pkcs8(&der).map_err(|_| KeyError::Malformed("private key"))?;
        if pair.public_modulus_len() < 256 {
            return Err(KeyError::Malformed("RSA keys must have at least 2048 bits"));
        }
        Ok(pair)
    }

    fn public(&self) -> Jwk {
        Jwk::rs256(self.kid.clone(), self.n.clone(), self.e.clone())
    }
}

/// The private key document (the Secrets Manager value).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyDocument {
    /// The `iss` of issued tokens, as the rotation function was configured with it.
    pub issuer: String,
    /// When `current` began to sign.
    pub promoted_at: u64,
    pub previous: Option<StoredKey>,
    pub current: StoredKey,
    pub next: StoredKey,
}

impl KeyDocument {
    /// The first keys of a new deployment. The first `current` signs at once: no verifier can
    /// have cached a key set without it, since none existed before.
    pub fn genesis(issuer: &str, now: u64) -> Result<Self, KeyError> {
        Ok(Self {
            issuer: issuer.to_owned(),
            promoted_at: now,
            previous: None,
            current: StoredKey::generate(now)?,
            next: StoredKey::generate(now)?,
        })
    }

    /// The document after one rotation at `now`: `next` signs, `current` only verifies, and a
    /// new `next` is listed. Refused while the next key is too recently listed, or while tokens
    /// of the key about to leave the list may still be alive.
    pub fn rotated(
        &self,
        issuer: &str,
        now: u64,
        rules: RotationRules,
    ) -> Result<Result<Self, RotationRefused>, KeyError> {
        let needed = rules.listed_before_signing.as_secs();
        let listed = now.saturating_sub(self.next.created_at);
        if listed < needed {
            return Ok(Err(RotationRefused::NextListedTooBriefly {
                listed_secs: listed,
                needed_secs: needed,
            }));
        }
        // `previous` stopped signing when `current` was promoted.
        let previous_needed_until = self.promoted_at + rules.signed_tokens_live.as_secs();
        if self.previous.is_some() && now < previous_needed_until {
            return Ok(Err(RotationRefused::PreviousStillNeeded {
                until: previous_needed_until,
            }));
        }
        Ok(Ok(Self {
            issuer: issuer.to_owned(),
            promoted_at: now,
            previous: Some(self.current.clone()),
            current: self.next.clone(),
            next: StoredKey::generate(now)?,
        }))
    }

    /// Parses and checks a stored document: each key id names its public half, and the
    /// current key, the one that signs, is a usable private key. (The others are parsed when
    /// they come to sign; a rotation's test step does that before the switch.)
    pub fn parse(json: &str) -> Result<Self, KeyError> {
        let document: Self =
            serde_json::from_str(json).map_err(|_| KeyError::Malformed("not a key document"))?;
        if document
            .keys()
            .any(|key| key.kid != thumbprint(&key.n, &key.e))
        {
            return Err(KeyError::Malformed("a key id does not name its key"));
        }
        document.signer()?;
        Ok(document)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| unreachable!("plain strings and numbers"))
    }

    fn keys(&self) -> impl Iterator<Item = &StoredKey> {
        self.previous.iter().chain([&self.current, &self.next])
    }

    /// The public half: every listed key, newest last.
    pub fn public(&self) -> Result<PublicKeys, KeyError> {
        Ok(PublicKeys {
            issuer: self.issuer.clone(),
            keys: self.keys().map(StoredKey::public).collect(),
        })
    }

    /// The key that signs: `current`.
    pub fn signer(&self) -> Result<Signer, KeyError> {
        Ok(Signer {
            kid: self.current.kid.clone(),
            pair: self.current.key_pair()?,
        })
    }
}

/// One public key as a JWK (RFC 7517): RSA, for signatures, RS256 only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Jwk {
    pub kty: String,
    pub kid: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub alg: String,
    pub n: String,
    pub e: String,
}

impl Jwk {
    fn rs256(kid: String, n: String, e: String) -> Self {
        Self {
            kty: "RSA".into(),
            kid,
            use_: "sig".into(),
            alg: "RS256".into(),
            n,
            e,
        }
    }
}

/// The published document: the issuer and the public keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublicKeys {
    pub issuer: String,
    pub keys: Vec<Jwk>,
}

impl PublicKeys {
    /// The JWKS (`{"keys": [...]}`) as served at the `jwks_uri`.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": self.keys })
    }

    /// The verification key of each listed key, by `kid`. Anything but an RS256 RSA key is
    /// skipped, so a stored document can never make another algorithm acceptable.
    pub fn verifiers(&self) -> Vec<(String, DecodingKey)> {
        self.keys
            .iter()
            .filter(|jwk| jwk.kty == "RSA" && jwk.alg == "RS256" && jwk.use_ == "sig")
            .filter_map(|jwk| {
                let key = DecodingKey::from_rsa_components(&jwk.n, &jwk.e).ok()?;
                Some((jwk.kid.clone(), key))
            })
            .collect()
    }
}

/// The signing key, parsed once per cold start.
pub struct Signer {
    kid: String,
    pair: RsaKeyPair,
}

impl Signer {
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 (JWS `RS256`) over `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| KeyError::Malformed("signing failed"))?;
        Ok(signature)
    }
}

#[cfg(any(test, feature = "test-util"))]
impl Signer {
    /// The public key as PEM (SubjectPublicKeyInfo), as an attacker would fetch and reuse it.
    pub fn public_key_pem(&self) -> String {
        let der = self
            .pair
            .public_key()
            .as_der()
            .unwrap_or_else(|_| unreachable!("a parsed key encodes"));
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|line| std::str::from_utf8(line).unwrap_or_default())
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
    }
}

/// The base64url modulus and exponent of a key pair's public half.
fn public_jwk_parts(pair: &RsaKeyPair) -> (String, String) {
    let public = pair.public_key();
    (
        B64.encode(public.modulus().big_endian_without_leading_zero()),
        B64.encode(public.exponent().big_endian_without_leading_zero()),
    )
}

/// The RFC 7638 JWK thumbprint of an RSA public key: the key id, so a `kid` names exactly one
/// key.
fn thumbprint(n: &str, e: &str) -> String {
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    B64.encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3600;

    fn rules() -> RotationRules {
        RotationRules {
            listed_before_signing: API_GATEWAY_KEY_CACHE,
            signed_tokens_live: Duration::from_secs(630),
        }
    }

    #[test]
    fn genesis_makes_two_distinct_2048_bit_keys_and_lists_both() {
        let doc = KeyDocument::genesis("https://auth.test", 1_000).expect("keys");
        assert_ne!(doc.current.kid, doc.next.kid);
        let public = doc.public().expect("public");
        assert_eq!(public.issuer, "https://auth.test");
        let kids: Vec<_> = public.keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, [doc.current.kid.as_str(), doc.next.kid.as_str()]);
        for key in &public.keys {
            // 2048-bit modulus: 256 bytes, 342 base64url characters.
            assert_eq!(B64.decode(&key.n).expect("n").len(), 256);
            assert_eq!(key.e, "AQAB");
        }
    }

    #[test]
    fn the_published_keys_carry_no_private_part() {
        let doc = KeyDocument::genesis("https://auth.test", 1_000).expect("keys");
        let jwks = doc.public().expect("public").jwks().to_string();
        for private in [
            "\"d\"", "\"p\"", "\"q\"", "\"dp\"", "\"dq\"", "\"qi\"", "oct", "pkcs8",
        ] {
            assert!(!jwks.contains(private), "{private} in {jwks}");
        }
        // And the private document's Debug hides the keys too.
        let debug = format!("{doc:?}");
        assert!(!debug.contains(&doc.current.pkcs8));
    }

    #[test]
    fn the_kid_is_the_rfc_7638_thumbprint() {
        // RFC 7638, section 3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".to_owned();
        let e = "AQAB".to_owned();
        assert_eq!(
            thumbprint(&n, &e),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn rotation_promotes_next_demotes_current_and_lists_a_new_next() {
        let doc = KeyDocument::genesis("https://auth.test", 0).expect("keys");
        let later = 30 * 24 * HOUR;
        let rotated = doc
            .rotated("https://auth.test", later, rules())
            .expect("keys")
            .expect("allowed");
        assert_eq!(rotated.previous.as_ref(), Some(&doc.current));
        assert_eq!(rotated.current, doc.next);
        assert_eq!(rotated.next.created_at, later);
        assert_eq!(rotated.promoted_at, later);
        assert_eq!(rotated.signer().expect("signer").kid(), doc.next.kid);
        assert_eq!(rotated.public().expect("public").keys.len(), 3);
    }

    #[test]
    fn a_key_listed_for_less_than_two_hours_never_signs() {
        let doc = KeyDocument::genesis("i", 0).expect("keys");
        let refused = doc.rotated("i", 2 * HOUR - 1, rules()).expect("keys");
        assert_eq!(
            refused,
            Err(RotationRefused::NextListedTooBriefly {
                listed_secs: 2 * HOUR - 1,
                needed_secs: 2 * HOUR
            })
        );
        assert!(doc.rotated("i", 2 * HOUR, rules()).expect("keys").is_ok());
    }

    #[test]
    fn a_key_stays_listed_while_tokens_it_signed_can_live() {
        let rules = RotationRules {
            listed_before_signing: Duration::ZERO,
            signed_tokens_live: Duration::from_secs(630),
        };
        let first = KeyDocument::genesis("i", 0).expect("keys");
        let second = first.rotated("i", 100, rules).expect("keys").expect("ok");
        // `first.current` (now `previous`) stopped signing at 100: its tokens live until 730.
        assert_eq!(
            second.rotated("i", 729, rules).expect("keys"),
            Err(RotationRefused::PreviousStillNeeded { until: 730 })
        );
        let third = second.rotated("i", 730, rules).expect("keys").expect("ok");
        let kids: Vec<_> = third
            .public()
            .expect("public")
            .keys
            .into_iter()
            .map(|k| k.kid)
            .collect();
        assert!(!kids.contains(&first.current.kid));
        assert!(kids.contains(&second.current.kid));
    }

    #[test]
    fn a_document_round_trips_and_garbage_is_refused() {
        let doc = KeyDocument::genesis("i", 5).expect("keys");
        assert_eq!(KeyDocument::parse(&doc.to_json()).expect("parses"), doc);
        assert!(KeyDocument::parse("hunter2").is_err());
        let mut broken = doc.clone();
        broken.current.pkcs8 = "AAAA".into();
        assert_eq!(
            KeyDocument::parse(&broken.to_json()),
            Err(KeyError::Malformed("private key"))
        );
    }

    #[test]
    fn only_rs256_rsa_signature_keys_become_verifiers() {
        let doc = KeyDocument::genesis("i", 5).expect("keys");
        let mut public = doc.public().expect("public");
        public.keys[0].alg = "HS256".into();
        public.keys[1].kty = "oct".into();
        assert!(public.verifiers().is_empty());
    }
}
