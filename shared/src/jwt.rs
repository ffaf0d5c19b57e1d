//! Access and refresh tokens (docs/requirements.md, "Tokens": JWT-01 to JWT-15).
//!
//! Access tokens are RS256: any service can verify them with the public keys this service
//! publishes (see [`crate::signing`]), and API Gateway's JWT authorizer can too. Refresh tokens
//! stay internal: HS256 under a key derived from `JWT_SECRET` that no JWKS lists, with no
//! `scope`, so no outside verifier ever takes one for an access token; only the functions that
//! issue or spend refresh tokens hold that secret. Each use has its own
//! algorithm, key, `typ` header and `token_use` claim (JWT-08). Keys and `Validation`s are built
//! once per cold start.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::Config;
use crate::crypto::{self, derive_key};
use crate::domain::UserRecord;
use crate::signing::{KeyDocument, KeyError, PublicKeys, Signer};
use secrecy::{ExposeSecret, SecretString};

pub use crate::clock::LEEWAY_SECS;
/// Longest token accepted; anything longer is refused before decoding (JWT-12).
pub const MAX_TOKEN_BYTES: usize = 4096;

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

    fn algorithm(self) -> Algorithm {
        match self {
            Self::Access => Algorithm::RS256,
            Self::Refresh => Algorithm::HS256,
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
    /// What an authorizer may require (access tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Whether the user's address is verified (access tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// How the user signed in, as RFC 8176 values (access tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
}

impl Claims {
    /// The claims of a session whose sign-in passed a second factor after the password: an
    /// access token says so in `amr`, and a refresh token carries it to the access tokens it
    /// is traded for.
    #[must_use]
    pub fn with_second_factor(mut self) -> Self {
        self.amr = Some(vec!["pwd".to_owned(), "otp".to_owned()]);
        self
    }

    /// Whether the session's sign-in passed a second factor.
    pub fn has_second_factor(&self) -> bool {
        self.amr
            .as_ref()
            .is_some_and(|amr| amr.iter().any(|method| method == "otp"))
    }

    /// The last second a verifier still accepts the token (its `exp` plus the leeway): records
    /// about it (spent, revoked) must live until then.
    pub fn verifiable_until(&self) -> u64 {
        self.exp + LEEWAY_SECS
    }
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

/// The access token keys a function holds: the public keys it verifies with, and the signing
/// key if it issues tokens. Functions that issue tokens read the private key document; the
/// others, only the published public keys.
pub struct AccessKeys {
    issuer: Option<String>,
    signer: Option<Signer>,
    verifiers: Vec<(String, DecodingKey)>,
}

impl AccessKeys {
    /// No access keys: for the functions that never see an access token.
    pub fn none() -> Self {
        Self {
            issuer: None,
            signer: None,
            verifiers: Vec::new(),
        }
    }

    /// Signs with the document's current key, verifies with every key it lists.
    pub fn signing(document: &KeyDocument) -> Result<Self, KeyError> {
        Ok(Self {
            signer: Some(document.signer()?),
            ..Self::verifying(&document.public()?)
        })
    }

    /// Verifies with the published keys; signs nothing.
    pub fn verifying(public: &PublicKeys) -> Self {
        Self {
            issuer: Some(public.issuer.clone()),
            signer: None,
            verifiers: public.verifiers(),
        }
    }
}

/// The refresh token keys derived from one secret: its key id, the keys and their validation.
struct RefreshKeys {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl RefreshKeys {
    fn new(secret: &SecretString) -> Self {
        let secret = secret.expose_secret().as_bytes();
        let key = derive_key(secret, b"jwt/refresh");
        Self {
            kid: crypto::hex(&derive_key(secret, b"jwt/kid")[..8]),
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
        }
    }
}

/// Signing and verification of both token kinds.
///
/// Refresh tokens: the current `JWT_SECRET` signs; the previous one, while set
/// (`JWT_SECRET_PREVIOUS`), still verifies the tokens it signed, so the secret can be rotated
/// without signing anyone out (RL-04). A function without `JWT_SECRET` neither signs nor
/// verifies refresh tokens. Access tokens: see [`AccessKeys`]. The `kid` header names
/// the key either way.
pub struct TokenKeys {
    refresh: Option<RefreshKeys>,
    previous_refresh: Option<RefreshKeys>,
    access: AccessKeys,
    access_validation: Validation,
    refresh_validation: Validation,
    issuer: String,
    audience: String,
    scope: String,
    access_ttl: u64,
    refresh_ttl: u64,
}

impl TokenKeys {
    /// The issuer is `JWT_ISSUER` when set, else the one the key document names.
    pub fn new(config: &Config, access: AccessKeys) -> Self {
        let issuer = config
            .tokens
            .issuer
            .clone()
            .or_else(|| access.issuer.clone())
            .unwrap_or_default();
        let audience = &config.tokens.audience;
        Self {
            access_validation: validation(TokenUse::Access, &issuer, audience),
            refresh_validation: validation(TokenUse::Refresh, &issuer, audience),
            refresh: config.tokens.refresh_secret.as_ref().map(RefreshKeys::new),
            previous_refresh: config
                .tokens
                .previous_refresh_secret
                .as_ref()
                .map(RefreshKeys::new),
            access,
            issuer,
            audience: config.tokens.audience.clone(),
            scope: config.tokens.scope.clone(),
            access_ttl: config.tokens.access_ttl.as_secs(),
            refresh_ttl: config.tokens.refresh_ttl.as_secs(),
        }
    }

    /// The `iss` of issued tokens (for tests: the token response does not name it).
    #[cfg(any(test, feature = "test-util"))]
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The id of the key that signs tokens of `token_use` (`None`: this function signs none),
    /// for tests.
    #[cfg(any(test, feature = "test-util"))]
    pub fn kid(&self, token_use: TokenUse) -> Option<&str> {
        match token_use {
            TokenUse::Access => self.access.signer.as_ref().map(Signer::kid),
            TokenUse::Refresh => self.refresh.as_ref().map(|keys| keys.kid.as_str()),
        }
    }

    /// Claims for a new access token of `user` in session `sid`.
    pub fn access_claims(&self, user: &UserRecord, sid: &str, now: u64) -> Claims {
        Claims {
            scope: Some(self.scope.clone()),
            email_verified: Some(user.email_verified),
            amr: Some(vec!["pwd".to_owned()]),
            ..self.claims(
                user,
                sid,
                TokenUse::Access,
                now,
                now + self.access_ttl,
                None,
            )
        }
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
            scope: None,
            email_verified: None,
            amr: None,
        }
    }

    /// Signs `claims` with the key of its use. Signing is deterministic (RSASSA-PKCS1-v1_5 and
    /// HMAC both are): the same claims always give the same token.
    pub fn sign(&self, claims: Claims) -> Result<Signed, TokenError> {
        let token_use = claims.token_use;
        let mut header = Header::new(token_use.algorithm());
        header.typ = Some(token_use.typ().to_owned());
        let signed = match token_use {
            TokenUse::Refresh => match &self.refresh {
                Some(refresh) => {
                    header.kid = Some(refresh.kid.clone());
                    jsonwebtoken::encode(&header, &claims, &refresh.encoding)
                        .map_err(|err| err.to_string())
                }
                None => Err("this function holds no refresh-token key".to_owned()),
            },
            TokenUse::Access => match &self.access.signer {
                Some(signer) => {
                    header.kid = Some(signer.kid().to_owned());
                    sign_rs256(signer, &header, &claims)
                }
                None => Err("this function holds no signing key".to_owned()),
            },
        };
        match signed {
            Ok(token) => Ok(Signed { token, claims }),
            Err(error) => {
                tracing::error!(%error, "token signing failed");
                Err(TokenError::Invalid)
            }
        }
    }

    /// Verifies a token of the given use at time `now` (seconds): shape, signature, pinned
    /// algorithm, `kid`, `typ`, `iss`, `aud`, `exp`, `nbf`, `iat`, `token_use`, and for access
    /// tokens the configured `scope`.
    pub fn verify(&self, token: &str, token_use: TokenUse, now: u64) -> Result<Claims, TokenError> {
        if !is_compact_jws(token) {
            return Err(TokenError::Invalid);
        }
        // The header is read unverified only to pick the key; nothing in it is trusted before the
        // signature is checked below with the algorithm of the expected use.
        #[allow(clippy::disallowed_methods)]
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        // A token names its key only by `kid`, among our own keys (JWT-04); a header that points
        // at keys elsewhere is refused outright.
        if header.jku.is_some()
            || header.jwk.is_some()
            || header.x5u.is_some()
            || header.x5c.is_some()
            || header.crit.is_some()
        {
            return Err(TokenError::Invalid);
        }
        let kid = header.kid.as_deref().ok_or(TokenError::Invalid)?;
        let key = match token_use {
            TokenUse::Access => self
                .access
                .verifiers
                .iter()
                .find(|(known, _)| known == kid)
                .map(|(_, key)| key),
            TokenUse::Refresh => [self.refresh.as_ref(), self.previous_refresh.as_ref()]
                .into_iter()
                .flatten()
                .find(|keys| keys.kid == kid)
                .map(|keys| &keys.decoding),
        }
        .ok_or(TokenError::Invalid)?;
        let validation = match token_use {
            TokenUse::Access => &self.access_validation,
            TokenUse::Refresh => &self.refresh_validation,
        };
        let data =
            jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|err| {
                match err.kind() {
                    ErrorKind::ExpiredSignature => TokenError::Expired,
                    _ => TokenError::Invalid,
                }
            })?;
        // The signature is verified, so the header can be trusted from here on.
        let claims = data.claims;
        if data.header.typ.as_deref() != Some(token_use.typ())
            || claims.token_use != token_use
            || claims.iat > now + LEEWAY_SECS
            || claims.nbf.is_some_and(|nbf| nbf > now + LEEWAY_SECS)
        {
            return Err(TokenError::Invalid);
        }
        if token_use == TokenUse::Access && claims.scope.as_deref() != Some(self.scope.as_str()) {
            return Err(TokenError::Invalid);
        }
        // The library checked `exp` against the wall clock; check it against ours as well.
        if claims.exp + LEEWAY_SECS <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// The checks of one token use, built once per instance. The algorithm comes from the use, never
/// from the header: an HS256 token "signed" with a public key is refused (the key's family does
/// not match).
fn validation(token_use: TokenUse, issuer: &str, audience: &str) -> Validation {
    let mut validation = Validation::new(token_use.algorithm());
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation
}

/// A compact JWS signed RS256 by `signer`.
fn sign_rs256(signer: &Signer, header: &Header, claims: &Claims) -> Result<String, String> {
    let signing_input = format!("{}.{}", b64_json(header)?, b64_json(claims)?);
    let signature = signer
        .sign(signing_input.as_bytes())
        .map_err(|err| err.to_string())?;
    Ok(format!("{signing_input}.{}", B64.encode(signature)))
}

/// One JWS part: base64url of the value's JSON.
fn b64_json(value: &impl Serialize) -> Result<String, String> {
    serde_json::to_vec(value)
        .map(|json| B64.encode(json))
        .map_err(|err| err.to_string())
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
// The tests read the headers of tokens they made, to check what was written there.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use crate::clock::{Clock, SystemClock};
    use crate::domain::{Email, Username};
    use crate::testing::{access_keys, key_document};
    use base64ct::{Base64UrlUnpadded, Encoding};
    use serde_json::{Value, json};
    use time::OffsetDateTime;

    const SECRET: &str = "k3Jd9-fQ2mXz7LpR4vT8wYbN6cHs1aGe";
    const HASH_KEY: &str = "hash-key-for-the-tests-0123456789abcdef";

    /// An access token of `user()` for session `s1`, signed now.
    fn signed_access(keys: &TokenKeys) -> Signed {
        let claims = keys.access_claims(&user(), "s1", now());
        keys.sign(claims).expect("signed")
    }

    fn access_token(keys: &TokenKeys) -> String {
        signed_access(keys).token
    }

    #[track_caller]
    fn assert_invalid(keys: &TokenKeys, token: &str, token_use: TokenUse) {
        assert_eq!(
            keys.verify(token, token_use, now()),
            Err(TokenError::Invalid)
        );
    }

    fn config_with_secret(secret: &str, previous: Option<&str>) -> Config {
        Config::from_lookup(|name| match name {
            "USERS_TABLE" | "TOKENS_TABLE" | "SESSIONS_TABLE" => Some("t".into()),
            "HASH_KEY" => Some(HASH_KEY.into()),
            "JWT_SECRET" => Some(secret.into()),
            "JWT_SECRET_PREVIOUS" => previous.map(str::to_owned),
            "JWT_ISSUER" => Some("https://auth.test".into()),
            _ => None,
        })
        .expect("config")
    }

    fn keys() -> TokenKeys {
        TokenKeys::new(&config_with_secret(SECRET, None), access_keys())
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

    fn b64(value: &[u8]) -> String {
        Base64UrlUnpadded::encode_string(value)
    }

    /// Signs arbitrary header and claims RS256 with the real signing key, as a forger who held
    /// it would: what such a token gets past is up to the claim checks alone.
    fn forge(header: Value, claims: Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signer = key_document().signer().expect("signer");
        let signature = signer.sign(input.as_bytes()).expect("signed");
        format!("{input}.{}", b64(&signature))
    }

    /// An HS256 token under `secret`, with `header` and `claims`.
    fn forge_hs256(secret: &[u8], header: Value, claims: Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mac = crypto::hmac_sha256(secret, &[input.as_bytes()]);
        format!("{input}.{}", b64(&mac))
    }

    fn kid() -> String {
        key_document().current.kid.clone()
    }

    fn good_claims(keys: &TokenKeys) -> Value {
        serde_json::to_value(keys.access_claims(&user(), "s1", now())).expect("claims")
    }

    fn header(typ: &str) -> Value {
        json!({"alg": "RS256", "typ": typ, "kid": kid()})
    }

    #[test]
    fn round_trip_and_claims_allowlist() {
        let keys = keys();
        let signed = signed_access(&keys);
        let claims = keys
            .verify(&signed.token, TokenUse::Access, now())
            .expect("valid");
        assert_eq!(claims, signed.claims);
        assert_eq!(claims.ver, 3);
        assert_eq!(claims.scope.as_deref(), Some("api"));
        assert_eq!(claims.amr, Some(vec!["pwd".to_owned()]));
        assert_eq!(claims.email_verified, Some(false));
        let jose = jsonwebtoken::decode_header(&signed.token).expect("header");
        assert_eq!(jose.alg, Algorithm::RS256);
        assert_eq!(jose.kid, Some(kid()));
        // JWT-13: exactly these claims, no personal data.
        let value = serde_json::to_value(&claims).expect("json");
        let mut names: Vec<_> = value.as_object().expect("object").keys().cloned().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "amr",
                "aud",
                "email_verified",
                "exp",
                "iat",
                "iss",
                "jti",
                "scope",
                "sid",
                "sub",
                "token_use",
                "ver"
            ]
        );
        // A forged token with the right key verifies, proving the forger below is faithful.
        assert!(
            keys.verify(
                &forge(header("at+jwt"), good_claims(&keys)),
                TokenUse::Access,
                now()
            )
            .is_ok()
        );
    }

    #[test]
    fn refresh_tokens_are_hs256_without_scope_and_unknown_to_the_jwks() {
        let keys = keys();
        let refresh = keys
            .sign(keys.refresh_claims(&user(), "s1", now(), now()))
            .expect("signed");
        let header = jsonwebtoken::decode_header(&refresh.token).expect("header");
        assert_eq!(header.alg, Algorithm::HS256);
        let published = key_document().public().expect("public");
        assert!(
            published
                .keys
                .iter()
                .all(|jwk| Some(&jwk.kid) != header.kid.as_ref())
        );
        assert_eq!(refresh.claims.scope, None);
        assert_eq!(refresh.claims.amr, None);
    }

    #[test]
    fn a_function_without_the_refresh_token_key_neither_signs_nor_takes_refresh_tokens() {
        let holder = keys();
        let refresh = holder
            .sign(holder.refresh_claims(&user(), "s1", now(), now()))
            .expect("signed")
            .token;
        let without = Config::from_lookup(|name| match name {
            "USERS_TABLE" | "TOKENS_TABLE" | "SESSIONS_TABLE" => Some("t".into()),
            "HASH_KEY" => Some(HASH_KEY.into()),
            "JWT_ISSUER" => Some("https://auth.test".into()),
            _ => None,
        })
        .expect("config");
        let without = TokenKeys::new(&without, access_keys());
        assert_eq!(without.kid(TokenUse::Refresh), None);
        assert_invalid(&without, &refresh, TokenUse::Refresh);
        assert_eq!(
            without
                .sign(without.refresh_claims(&user(), "s1", now(), now()))
                .map(|s| s.token),
            Err(TokenError::Invalid)
        );
        let access = without
            .sign(without.access_claims(&user(), "s1", now()))
            .expect("access tokens still signed")
            .token;
        assert!(holder.verify(&access, TokenUse::Access, now()).is_ok());
    }

    #[test]
    fn a_verifying_function_checks_what_a_signing_one_issued() {
        let signer = keys();
        let token = signer
            .sign(signer.access_claims(&user(), "s1", now()))
            .expect("signed")
            .token;
        let public = key_document().public().expect("public");
        let verifier = TokenKeys::new(
            &config_with_secret(SECRET, None),
            AccessKeys::verifying(&public),
        );
        assert!(verifier.verify(&token, TokenUse::Access, now()).is_ok());
        assert_eq!(verifier.kid(TokenUse::Access), None);
        assert_eq!(
            verifier
                .sign(verifier.access_claims(&user(), "s1", now()))
                .map(|s| s.token),
            Err(TokenError::Invalid),
            "a verifying function cannot sign"
        );
    }

    #[test]
    fn the_issuer_comes_from_the_key_document_unless_configured() {
        let unset = Config::from_lookup(|name| match name {
            "USERS_TABLE" | "TOKENS_TABLE" | "SESSIONS_TABLE" => Some("t".into()),
            "HASH_KEY" => Some(HASH_KEY.into()),
            "JWT_SECRET" => Some(SECRET.into()),
            _ => None,
        })
        .expect("config");
        let keys = TokenKeys::new(&unset, access_keys());
        assert_eq!(keys.issuer(), "http://127.0.0.1:9000");
        assert_eq!(self::keys().issuer(), "https://auth.test");
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
    fn a_rotated_secret_keeps_verifying_refresh_tokens_until_it_is_dropped() {
        // RL-04: the current secret signs, current and previous verify.
        const NEW: &str = "Zz9-the-next-secret-of-at-least-32-bytes";
        let old = keys();
        let token = old
            .sign(old.refresh_claims(&user(), "s1", now(), now()))
            .expect("signed")
            .token;
        let rotated = |previous: Option<&str>| {
            TokenKeys::new(&config_with_secret(NEW, previous), access_keys())
        };
        let during = rotated(Some(SECRET));
        assert!(
            during.verify(&token, TokenUse::Refresh, now()).is_ok(),
            "old tokens still verify"
        );
        assert_ne!(during.kid(TokenUse::Refresh), old.kid(TokenUse::Refresh));
        let fresh = during
            .sign(during.refresh_claims(&user(), "s2", now(), now()))
            .expect("signed")
            .token;
        let header = jsonwebtoken::decode_header(&fresh).expect("header");
        assert_eq!(
            header.kid.as_deref(),
            during.kid(TokenUse::Refresh),
            "new tokens name the new secret"
        );
        assert!(
            old.verify(&fresh, TokenUse::Refresh, now()).is_err(),
            "new tokens use the new key"
        );
        let after = rotated(None);
        assert_eq!(
            after.verify(&token, TokenUse::Refresh, now()),
            Err(TokenError::Invalid)
        );
        assert!(after.verify(&fresh, TokenUse::Refresh, now()).is_ok());
    }

    #[test]
    fn signing_is_deterministic() {
        let keys = keys();
        for claims in [
            keys.refresh_claims(&user(), "s1", now(), now()),
            keys.access_claims(&user(), "s1", now()),
        ] {
            let a = keys.sign(claims.clone()).expect("signed");
            let b = keys.sign(claims).expect("signed");
            assert_eq!(a.token, b.token);
        }
    }

    #[test]
    fn access_and_refresh_tokens_are_not_interchangeable() {
        // JWT-08
        let keys = keys();
        let access = signed_access(&keys);
        let refresh = keys
            .sign(keys.refresh_claims(&user(), "s1", now(), now()))
            .expect("signed");
        assert_invalid(&keys, &access.token, TokenUse::Refresh);
        assert_invalid(&keys, &refresh.token, TokenUse::Access);
        assert!(
            keys.verify(&refresh.token, TokenUse::Refresh, now())
                .is_ok()
        );
        // Right key, wrong typ or wrong token_use claim.
        assert!(
            keys.verify(
                &forge(header("JWT"), good_claims(&keys)),
                TokenUse::Access,
                now()
            )
            .is_err()
        );
        let mut claims = good_claims(&keys);
        claims["token_use"] = json!("refresh");
        assert!(
            keys.verify(&forge(header("at+jwt"), claims), TokenUse::Access, now())
                .is_err()
        );
    }

    #[test]
    fn tampering_and_foreign_keys_are_refused() {
        // JWT-01, JWT-03
        let keys = keys();
        let token = access_token(&keys);
        let mut bytes = token.clone().into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(bytes).expect("ascii");
        assert_invalid(&keys, &flipped, TokenUse::Access);
        // Another deployment's keys: its kid is unknown here.
        let other = KeyDocument::genesis("https://auth.test", 0).expect("keys");
        let stranger = TokenKeys::new(
            &config_with_secret(SECRET, None),
            AccessKeys::signing(&other).expect("keys"),
        );
        assert_eq!(
            stranger.verify(&token, TokenUse::Access, now()),
            Err(TokenError::Invalid)
        );
        let foreign = stranger
            .sign(stranger.access_claims(&user(), "s1", now()))
            .expect("signed")
            .token;
        assert_invalid(&keys, &foreign, TokenUse::Access);
    }

    #[test]
    fn an_added_scope_breaks_the_signature_and_a_forged_one_is_refused() {
        let keys = keys();
        let token = access_token(&keys);
        // Rewrite the payload with one more scope, keeping the signature.
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims: Value =
            serde_json::from_slice(&Base64UrlUnpadded::decode_vec(parts[1]).expect("b64"))
                .expect("json");
        claims["scope"] = json!("api admin");
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            b64(claims.to_string().as_bytes()),
            parts[2]
        );
        assert_invalid(&keys, &tampered, TokenUse::Access);
        // Even correctly signed, an access token must carry exactly the configured scope.
        for scope in [json!("api admin"), json!(null), json!(""), json!(["api"])] {
            let mut claims = good_claims(&keys);
            claims["scope"] = scope.clone();
            assert!(
                keys.verify(&forge(header("at+jwt"), claims), TokenUse::Access, now())
                    .is_err(),
                "{scope}"
            );
        }
    }

    #[test]
    fn algorithm_is_pinned_and_confusion_is_refused() {
        // JWT-02: alg none (any case) and other algorithms are refused.
        let keys = keys();
        let claims = b64(good_claims(&keys).to_string().as_bytes());
        for alg in ["none", "noNE", "hs256", "HS384", "RS512", "PS256"] {
            let h = b64(json!({"alg": alg, "typ": "at+jwt", "kid": kid()})
                .to_string()
                .as_bytes());
            for signature in ["", "c2ln"] {
                assert!(
                    keys.verify(
                        &format!("{h}.{claims}.{signature}"),
                        TokenUse::Access,
                        now()
                    )
                    .is_err(),
                    "{alg}"
                );
            }
        }
        // Algorithm confusion: HS256 "signed" with what a verifier knows of the public key.
        let signer = key_document().signer().expect("signer");
        let jwk = &key_document().public().expect("public").keys[0];
        let hs_header = json!({"alg": "HS256", "typ": "at+jwt", "kid": kid()});
        for secret in [
            signer.public_key_pem().into_bytes(),
            jwk.n.clone().into_bytes(),
            serde_json::to_vec(jwk).expect("json"),
        ] {
            let token = forge_hs256(&secret, hs_header.clone(), good_claims(&keys));
            assert_invalid(&keys, &token, TokenUse::Access);
        }
        // And an RS256 token is never a refresh token, whatever it claims.
        let mut claims = good_claims(&keys);
        claims["token_use"] = json!("refresh");
        let rs_refresh = forge(
            json!({"alg": "RS256", "typ": "rt+jwt", "kid": kid()}),
            claims,
        );
        assert_invalid(&keys, &rs_refresh, TokenUse::Refresh);
    }

    #[test]
    fn issuer_audience_and_required_claims() {
        // JWT-06, JWT-07, JWT-11
        let keys = keys();
        let with = |edit: &dyn Fn(&mut Value)| {
            let mut claims = good_claims(&keys);
            edit(&mut claims);
            keys.verify(&forge(header("at+jwt"), claims), TokenUse::Access, now())
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
        let token = access_token(&keys);
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
        for kid in [json!("../../x"), json!("' OR 1=1"), json!(""), json!(null)] {
            let h = json!({"alg": "RS256", "typ": "at+jwt", "kid": kid});
            assert!(
                keys.verify(&forge(h, good_claims(&keys)), TokenUse::Access, now())
                    .is_err()
            );
        }
        // Keys named anywhere but by our kid: refused even when the signature is ours.
        for (name, value) in [
            ("jku", json!("https://evil.test/jwks.json")),
            ("x5u", json!("https://evil.test/cert.pem")),
            ("x5c", json!(["MIIB"])),
            (
                "jwk",
                serde_json::to_value(&key_document().public().expect("public").keys[0])
                    .expect("jwk"),
            ),
        ] {
            let mut h = header("at+jwt");
            h[name] = value;
            assert_eq!(
                keys.verify(&forge(h, good_claims(&keys)), TokenUse::Access, now()),
                Err(TokenError::Invalid),
                "{name}"
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
            assert_invalid(&keys, odd, TokenUse::Access);
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
