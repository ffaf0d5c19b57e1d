//! Access and refresh tokens (API.md, "Tokens"; checklist JWT-01..JWT-15).
//!
//! Both are HS256 JWTs, but each use has its own key (derived from `JWT_SECRET`), its own `typ`
//! header and its own `token_use` claim, so neither can stand in for the other (JWT-08). The
//! `Validation`s and keys are built once per cold start.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::Config;
use crate::crypto::{self, derive_key};
use crate::domain::UserRecord;
use secrecy::{ExposeSecret, SecretString};

/// Tolerance for clock skew on `exp`, `nbf` and `iat` (API.md: at most 30 s).
pub const LEEWAY_SECS: u64 = 30;
/// Longest token accepted; anything longer is refused before decoding (JWT-12).
pub const MAX_TOKEN_BYTES: usize = 4096;

const ALGORITHM: Algorithm = Algorithm::HS256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenUse {
    Access,
    Refresh,
}

impl TokenUse {
    /// The JOSE `typ` header (RFC 9068 names `at+jwt`; `rt+jwt` mirrors it for refresh tokens).
    fn typ(self) -> &'static str {
        match self {
            Self::Access => "at+jwt",
            Self::Refresh => "rt+jwt",
        }
    }

    fn label(self) -> &'static [u8] {
        match self {
            Self::Access => b"jwt/access",
            Self::Refresh => b"jwt/refresh",
        }
    }
}

/// The claims of both token kinds. Nothing here is personal data beyond the user id (JWT-13).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user id.
    pub sub: String,
    pub iat: u64,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    pub jti: String,
    /// The session (one sign-in and every token rotated from it).
    pub sid: String,
    pub token_use: TokenUse,
    /// The user's token version when issued; a revocation point raises it.
    pub ver: u64,
    /// When the session began (refresh tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<u64>,
}

/// Why a token was refused. Callers answer 401 either way; `Expired` lets the refresh endpoint
/// say `session_expired`. Only a correctly signed token can be `Expired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("invalid token")]
    Invalid,
    #[error("expired token")]
    Expired,
}

/// A signed token and its claims.
#[derive(Debug, Clone)]
pub struct Signed {
    pub token: String,
    pub claims: Claims,
}

struct UseKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

/// The keys derived from one secret: its key id and a key per token use.
struct KeySet {
    kid: String,
    access: UseKeys,
    refresh: UseKeys,
}

impl KeySet {
    fn new(secret: &SecretString, config: &Config) -> Self {
        let secret = secret.expose_secret().as_bytes();
        let use_keys = |token_use: TokenUse| {
            let key = derive_key(secret, token_use.label());
            let mut validation = Validation::new(ALGORITHM);
            validation.leeway = LEEWAY_SECS;
            validation.validate_nbf = true;
            validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
            validation.set_issuer(&[&config.tokens.issuer]);
            validation.set_audience(&[&config.tokens.audience]);
            UseKeys {
                encoding: EncodingKey::from_secret(&key),
                decoding: DecodingKey::from_secret(&key),
                validation,
            }
        };
        Self {
            kid: crypto::hex(&derive_key(secret, b"jwt/kid")[..8]),
            access: use_keys(TokenUse::Access),
            refresh: use_keys(TokenUse::Refresh),
        }
    }

    fn for_use(&self, token_use: TokenUse) -> &UseKeys {
        match token_use {
            TokenUse::Access => &self.access,
            TokenUse::Refresh => &self.refresh,
        }
    }
}

/// Signing and verification keys. The current secret signs; the previous one, while set
/// (`JWT_SECRET_PREVIOUS`), still verifies the tokens it signed, so a secret can be rotated
/// without signing anyone out (RL-04). The `kid` header names the secret.
pub struct TokenKeys {
    current: KeySet,
    previous: Option<KeySet>,
    issuer: String,
    audience: String,
    access_ttl: u64,
    refresh_ttl: u64,
}

impl TokenKeys {
    pub fn new(config: &Config) -> Self {
        Self {
            current: KeySet::new(&config.tokens.secret, config),
            previous: config
                .tokens
                .previous_secret
                .as_ref()
                .map(|secret| KeySet::new(secret, config)),
            issuer: config.tokens.issuer.clone(),
            audience: config.tokens.audience.clone(),
            access_ttl: config.tokens.access_ttl.as_secs(),
            refresh_ttl: config.tokens.refresh_ttl.as_secs(),
        }
    }

    /// The id of the signing secret.
    pub fn kid(&self) -> &str {
        &self.current.kid
    }

    /// Claims for a new access token of `user` in session `sid`.
    pub fn access_claims(&self, user: &UserRecord, sid: &str, now: u64) -> Claims {
        self.claims(
            user,
            sid,
            TokenUse::Access,
            now,
            now + self.access_ttl,
            None,
        )
    }

    /// Claims for a refresh token. A new session starts at `now`; a rotated one keeps its
    /// `auth_time`, so rotation never extends the absolute lifetime.
    pub fn refresh_claims(&self, user: &UserRecord, sid: &str, auth_time: u64, now: u64) -> Claims {
        let exp = auth_time + self.refresh_ttl;
        self.claims(user, sid, TokenUse::Refresh, now, exp, Some(auth_time))
    }

    /// The refresh token that replaces `spent`: same session, user version and absolute expiry,
    /// a new `jti`, issued at `iat`. Built from stored values, so re-signing it later gives the
    /// very same token.
    pub fn successor_claims(&self, spent: &Claims, jti: &str, iat: u64) -> Claims {
        Claims {
            iat,
            jti: jti.to_owned(),
            ..spent.clone()
        }
    }

    fn claims(
        &self,
        user: &UserRecord,
        sid: &str,
        token_use: TokenUse,
        iat: u64,
        exp: u64,
        auth_time: Option<u64>,
    ) -> Claims {
        Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user.id.to_string(),
            iat,
            exp,
            nbf: None,
            jti: Uuid::new_v4().to_string(),
            sid: sid.to_owned(),
            token_use,
            ver: user.token_version,
            auth_time,
        }
    }

    /// Signs `claims`. Signing is deterministic: the same claims always give the same token.
    pub fn sign(&self, claims: Claims) -> Result<Signed, TokenError> {
        let mut header = Header::new(ALGORITHM);
        header.typ = Some(claims.token_use.typ().to_owned());
        header.kid = Some(self.current.kid.clone());
        match jsonwebtoken::encode(
            &header,
            &claims,
            &self.current.for_use(claims.token_use).encoding,
        ) {
            Ok(token) => Ok(Signed { token, claims }),
            Err(err) => {
                tracing::error!(error = %err, "token signing failed");
                Err(TokenError::Invalid)
            }
        }
    }

    /// Verifies a token of the given use at time `now` (seconds): shape, signature, pinned
    /// algorithm, `kid`, `typ`, `iss`, `aud`, `exp`, `nbf`, `iat` and `token_use`.
    pub fn verify(&self, token: &str, token_use: TokenUse, now: u64) -> Result<Claims, TokenError> {
        if !is_compact_jws(token) {
            return Err(TokenError::Invalid);
        }
        // The `kid` only picks one of our own key sets (JWT-04); the signature check that
        // follows decides.
        let kid = jsonwebtoken::decode_header(token)
            .ok()
            .and_then(|header| header.kid);
        let key_set = [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|set| Some(set.kid.as_str()) == kid.as_deref())
            .ok_or(TokenError::Invalid)?;
        let keys = key_set.for_use(token_use);
        let data = jsonwebtoken::decode::<Claims>(token, &keys.decoding, &keys.validation)
            .map_err(|err| match err.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        // The signature is verified, so the header can be trusted from here on.
        let header = data.header;
        let claims = data.claims;
        if header.typ.as_deref() != Some(token_use.typ())
            || header.kid.as_deref() != Some(key_set.kid.as_str())
            || claims.token_use != token_use
            || claims.iat > now + LEEWAY_SECS
            || claims.nbf.is_some_and(|nbf| nbf > now + LEEWAY_SECS)
        {
            return Err(TokenError::Invalid);
        }
        // The library checked `exp` against the wall clock; check it against ours as well.
        if claims.exp + LEEWAY_SECS <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// Compact serialisation only: three base64url parts, bounded length (JWT-12).
fn is_compact_jws(token: &str) -> bool {
    token.len() <= MAX_TOKEN_BYTES
        && token.bytes().filter(|b| *b == b'.').count() == 2
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, SystemClock};
    use crate::domain::{Email, Username};
    use base64ct::{Base64UrlUnpadded, Encoding};
    use serde_json::{Value, json};
    use time::OffsetDateTime;

    const SECRET: &str = "k3Jd9-fQ2mXz7LpR4vT8wYbN6cHs1aGe";

    fn config(secret: &str, issuer: &str, audience: &str) -> Config {
        Config::from_lookup(|name| match name {
            "USERS_TABLE" | "TOKENS_TABLE" => Some("t".into()),
            "JWT_SECRET" => Some(secret.into()),
            "JWT_ISSUER" => Some(issuer.into()),
            "JWT_AUDIENCE" => Some(audience.into()),
            _ => None,
        })
        .expect("config")
    }

    fn keys_config() -> Config {
        config(SECRET, "https://auth.test", "auth")
    }

    fn keys() -> TokenKeys {
        TokenKeys::new(&keys_config())
    }

    fn user() -> UserRecord {
        let username = Username::parse("alice").expect("valid");
        let email = Email::parse("alice@example.com").expect("valid");
        let mut user = UserRecord::new(
            username,
            email,
            None,
            String::new(),
            OffsetDateTime::UNIX_EPOCH,
        );
        user.token_version = 3;
        user
    }

    fn now() -> u64 {
        SystemClock.unix().unsigned_abs()
    }

    /// Re-signs arbitrary header and claims with the access key, as a forger who knew it would.
    fn forge(keys: &TokenKeys, header: Value, claims: Value) -> String {
        let h = Base64UrlUnpadded::encode_string(header.to_string().as_bytes());
        let c = Base64UrlUnpadded::encode_string(claims.to_string().as_bytes());
        let signing_input = format!("{h}.{c}");
        let key = keys_config().derived_key(TokenUse::Access.label());
        let mac = crypto::hmac_sha256(&key, &[signing_input.as_bytes()]);
        let sig = Base64UrlUnpadded::encode_string(&mac);
        let _ = keys;
        format!("{signing_input}.{sig}")
    }

    fn good_claims(keys: &TokenKeys) -> Value {
        serde_json::to_value(keys.access_claims(&user(), "s1", now())).expect("claims")
    }

    fn header(typ: &str) -> Value {
        json!({"alg": "HS256", "typ": typ, "kid": keys().kid()})
    }

    #[test]
    fn round_trip_and_claims_allowlist() {
        let keys = keys();
        let signed = keys
            .sign(keys.access_claims(&user(), "s1", now()))
            .expect("signed");
        let claims = keys
            .verify(&signed.token, TokenUse::Access, now())
            .expect("valid");
        assert_eq!(claims, signed.claims);
        assert_eq!(claims.ver, 3);
        // JWT-13: exactly these claims, no personal data.
        let value = serde_json::to_value(&claims).expect("json");
        let mut names: Vec<_> = value.as_object().expect("object").keys().cloned().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "aud",
                "exp",
                "iat",
                "iss",
                "jti",
                "sid",
                "sub",
                "token_use",
                "ver"
            ]
        );
        // A forged token with the right key verifies, proving the forger below is faithful.
        assert!(
            keys.verify(
                &forge(&keys, header("at+jwt"), good_claims(&keys)),
                TokenUse::Access,
                now()
            )
            .is_ok()
        );
    }

    #[test]
    fn a_successor_keeps_the_session_and_its_absolute_expiry() {
        let keys = keys();
        let first = keys.refresh_claims(&user(), "s1", now() - 100, now() - 100);
        let next = keys.successor_claims(&first, "j2", now());
        assert_eq!(
            (next.sid.as_str(), next.exp, next.auth_time, next.ver),
            ("s1", first.exp, first.auth_time, 3)
        );
        assert_eq!((next.jti.as_str(), next.iat), ("j2", now()));
        assert_eq!(
            keys.sign(next.clone()).map(|s| s.token),
            keys.sign(next).map(|s| s.token)
        );
    }

    #[test]
    fn a_rotated_secret_keeps_verifying_until_it_is_dropped() {
        // RL-04: the current secret signs, current and previous verify.
        const NEW: &str = "Zz9-the-next-secret-of-at-least-32-bytes";
        let old = keys();
        let token = old
            .sign(old.access_claims(&user(), "s1", now()))
            .expect("signed")
            .token;
        let rotated = |previous: Option<&str>| {
            Config::from_lookup(|name| match name {
                "USERS_TABLE" | "TOKENS_TABLE" => Some("t".into()),
                "JWT_SECRET" => Some(NEW.into()),
                "JWT_SECRET_PREVIOUS" => previous.map(str::to_owned),
                "JWT_ISSUER" => Some("https://auth.test".into()),
                _ => None,
            })
            .map(|config| TokenKeys::new(&config))
            .expect("config")
        };
        let during = rotated(Some(SECRET));
        assert!(
            during.verify(&token, TokenUse::Access, now()).is_ok(),
            "old tokens still verify"
        );
        assert_ne!(during.kid(), old.kid());
        let fresh = during
            .sign(during.access_claims(&user(), "s2", now()))
            .expect("signed")
            .token;
        let header = jsonwebtoken::decode_header(&fresh).expect("header");
        assert_eq!(
            header.kid.as_deref(),
            Some(during.kid()),
            "new tokens name the new secret"
        );
        assert!(
            old.verify(&fresh, TokenUse::Access, now()).is_err(),
            "new tokens use the new key"
        );
        let after = rotated(None);
        assert_eq!(
            after.verify(&token, TokenUse::Access, now()),
            Err(TokenError::Invalid)
        );
        assert!(after.verify(&fresh, TokenUse::Access, now()).is_ok());
    }

    #[test]
    fn signing_is_deterministic() {
        let keys = keys();
        let claims = keys.refresh_claims(&user(), "s1", now(), now());
        let a = keys.sign(claims.clone()).expect("signed");
        let b = keys.sign(claims).expect("signed");
        assert_eq!(a.token, b.token);
    }

    #[test]
    fn access_and_refresh_tokens_are_not_interchangeable() {
        // JWT-08
        let keys = keys();
        let access = keys
            .sign(keys.access_claims(&user(), "s1", now()))
            .expect("signed");
        let refresh = keys
            .sign(keys.refresh_claims(&user(), "s1", now(), now()))
            .expect("signed");
        assert_eq!(
            keys.verify(&access.token, TokenUse::Refresh, now()),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            keys.verify(&refresh.token, TokenUse::Access, now()),
            Err(TokenError::Invalid)
        );
        assert!(
            keys.verify(&refresh.token, TokenUse::Refresh, now())
                .is_ok()
        );
        // Right key, wrong typ or wrong token_use claim.
        assert!(
            keys.verify(
                &forge(&keys, header("JWT"), good_claims(&keys)),
                TokenUse::Access,
                now()
            )
            .is_err()
        );
        let mut claims = good_claims(&keys);
        claims["token_use"] = json!("refresh");
        assert!(
            keys.verify(
                &forge(&keys, header("at+jwt"), claims),
                TokenUse::Access,
                now()
            )
            .is_err()
        );
    }

    #[test]
    fn tampering_and_foreign_keys_are_refused() {
        // JWT-01, JWT-03
        let keys = keys();
        let token = keys
            .sign(keys.access_claims(&user(), "s1", now()))
            .expect("signed")
            .token;
        let mut bytes = token.clone().into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(bytes).expect("ascii");
        assert_eq!(
            keys.verify(&flipped, TokenUse::Access, now()),
            Err(TokenError::Invalid)
        );
        let other = TokenKeys::new(&config(
            "Zz9-another-secret-of-32-bytes-xYqW",
            "https://auth.test",
            "auth",
        ));
        assert_eq!(
            other.verify(&token, TokenUse::Access, now()),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn algorithm_is_pinned() {
        // JWT-02: alg none (any case) and other algorithms are refused.
        let keys = keys();
        let claims = Base64UrlUnpadded::encode_string(good_claims(&keys).to_string().as_bytes());
        for alg in ["none", "noNE", "hs256", "HS384", "RS256"] {
            let h = Base64UrlUnpadded::encode_string(
                json!({"alg": alg, "typ": "at+jwt"}).to_string().as_bytes(),
            );
            assert!(
                keys.verify(&format!("{h}.{claims}."), TokenUse::Access, now())
                    .is_err(),
                "{alg}"
            );
            assert!(
                keys.verify(&format!("{h}.{claims}.c2ln"), TokenUse::Access, now())
                    .is_err(),
                "{alg}"
            );
        }
    }

    #[test]
    fn issuer_audience_and_required_claims() {
        // JWT-06, JWT-07, JWT-11
        let keys = keys();
        let with = |edit: &dyn Fn(&mut Value)| {
            let mut claims = good_claims(&keys);
            edit(&mut claims);
            keys.verify(
                &forge(&keys, header("at+jwt"), claims),
                TokenUse::Access,
                now(),
            )
        };
        assert!(with(&|_| {}).is_ok());
        assert!(with(&|c| c["iss"] = json!("https://evil.test")).is_err());
        assert!(with(&|c| c["aud"] = json!("other")).is_err());
        for claim in ["aud", "iss", "sub", "exp", "jti"] {
            assert!(
                with(&|c| _ = c.as_object_mut().map(|o| o.remove(claim))).is_err(),
                "missing {claim}"
            );
        }
        assert!(
            with(&|c| c["exp"] = json!("9999999999")).is_err(),
            "string exp (CVE-2026-25537)"
        );
        assert_eq!(
            with(&|c| c["exp"] = json!(now() - 31)),
            Err(TokenError::Expired)
        );
        assert!(
            with(&|c| c["exp"] = json!(now() - 5)).is_ok(),
            "inside the leeway"
        );
        assert!(with(&|c| c["nbf"] = json!(now() + 31)).is_err());
        assert!(with(&|c| c["iat"] = json!(now() + 3600)).is_err());
    }

    #[test]
    fn injected_clock_expires_tokens() {
        let keys = keys();
        let token = keys
            .sign(keys.access_claims(&user(), "s1", now()))
            .expect("signed")
            .token;
        assert!(
            keys.verify(&token, TokenUse::Access, now() + 600).is_ok(),
            "within leeway"
        );
        assert_eq!(
            keys.verify(&token, TokenUse::Access, now() + 631),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn header_key_pointers_and_odd_shapes_are_refused() {
        // JWT-04, JWT-12
        let keys = keys();
        for kid in ["../../x", "' OR 1=1", ""] {
            let h = json!({"alg": "HS256", "typ": "at+jwt", "kid": kid});
            assert!(
                keys.verify(
                    &forge(&keys, h, good_claims(&keys)),
                    TokenUse::Access,
                    now()
                )
                .is_err()
            );
        }
        for odd in [
            "",
            "a.b",
            "a.b.c.d",
            "{\"alg\":\"none\"}..",
            &"a".repeat(5000),
            "a.b.c{",
        ] {
            assert_eq!(
                keys.verify(odd, TokenUse::Access, now()),
                Err(TokenError::Invalid)
            );
        }
    }

    #[test]
    fn ten_thousand_tokens_have_distinct_ids() {
        // JWT-10
        let keys = keys();
        let ids: std::collections::HashSet<_> = (0..10_000)
            .map(|_| keys.access_claims(&user(), "s", now()).jti)
            .collect();
        assert_eq!(ids.len(), 10_000);
    }
}
