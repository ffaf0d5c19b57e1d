//! Items and attributes: the attribute names, value helpers, and the mapping between domain
//! records and DynamoDB items. Key builders live in `store::keys`.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::corrupt;
use crate::crypto::saturating_u32;
use crate::domain::{
    Email, FullName, Lockout, StoredCode, TotpState, UserId, UserRecord, Username,
};
use crate::store::{SessionRecord, Spend, StoreError, keys};

pub(super) type Item = HashMap<String, AttributeValue>;

/// The cancellation code of a condition that did not hold.
pub(super) const CONDITION_FAILED: &str = "ConditionalCheckFailed";

/// Attribute names, as stored.
pub(super) mod attr {
    pub const PK: &str = "pk";
    /// The sort key (sessions table only).
    pub const SK: &str = "sk";
    pub const TTL: &str = "ttl";
    pub const USER_ID: &str = "user_id";
    pub const ID: &str = "id";
    pub const USERNAME: &str = "username";
    pub const EMAIL: &str = "email";
    pub const FULL_NAME: &str = "full_name";
    pub const PASSWORD_HASH: &str = "password_hash";
    pub const TOKEN_VERSION: &str = "token_version";
    pub const CREATED_AT: &str = "created_at";
    pub const UPDATED_AT: &str = "updated_at";
    pub const FAILED_LOGINS: &str = "failed_logins";
    pub const LOCKED_UNTIL: &str = "locked_until_ms";
    pub const RESET_CODE_HASH: &str = "reset_code_hash";
    pub const RESET_CODE_EXPIRES_AT: &str = "reset_code_expires_at";
    pub const EMAIL_VERIFIED: &str = "email_verified";
    pub const VERIFY_CODE_HASH: &str = "verify_code_hash";
    pub const VERIFY_CODE_EXPIRES_AT: &str = "verify_code_expires_at";
    pub const PENDING_EMAIL: &str = "pending_email";
    pub const SID: &str = "sid";
    pub const SUCCESSOR_JTI: &str = "successor_jti";
    pub const SUCCESSOR_IAT: &str = "successor_iat";
    pub const SPENT_AT_MS: &str = "spent_at_ms";
    pub const REASON: &str = "reason";
    pub const REVOKED_AT: &str = "revoked_at";
    pub const COUNT: &str = "count";
    pub const UNTIL: &str = "until";
    pub const DOCUMENT: &str = "document";
    pub const LAST_USED_AT: &str = "last_used_at";
    pub const EXPIRES_AT: &str = "expires_at";
    pub const USER_AGENT: &str = "user_agent";
    pub const CLIENT: &str = "client";
    pub const TOTP_SECRET: &str = "totp_secret";
    pub const TOTP_ENABLED: &str = "totp_enabled";
    pub const TOTP_LAST_STEP: &str = "totp_last_step";
    pub const RECOVERY_CODES: &str = "recovery_codes";
    pub const TOTP_UNDO_HASH: &str = "totp_undo_hash";
    pub const TOTP_UNDO_EXPIRES_AT: &str = "totp_undo_expires_at";
    pub const TOTP_PENDING_UNTIL: &str = "totp_pending_until";
    pub const TRIES: &str = "tries";
}

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn rfc3339(at: OffsetDateTime) -> AttributeValue {
    s(at.format(&Rfc3339).unwrap_or_default())
}

pub(super) fn num_attr(item: &Item, name: &str) -> Option<u64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

pub(super) fn str_attr<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

pub(super) fn spent_item(spend: &Spend) -> Item {
    Item::from([
        (attr::PK.into(), s(keys::spent_token(&spend.spent_jti))),
        (attr::SID.into(), s(&spend.sid)),
        (attr::USER_ID.into(), s(spend.user_id.to_string())),
        (attr::SUCCESSOR_JTI.into(), s(&spend.successor_jti)),
        (attr::SUCCESSOR_IAT.into(), n(spend.successor_iat)),
        (attr::SPENT_AT_MS.into(), n(spend.spent_at_ms)),
        (attr::TTL.into(), n(spend.expires_at)),
    ])
}

/// The winning spend of `attempt.spent_jti`, as stored.
pub(super) fn parse_spent(item: &Item, attempt: &Spend) -> Result<Spend, StoreError> {
    let text = |name| {
        str_attr(item, name).ok_or_else(|| corrupt("a spent-token record lacks an attribute"))
    };
    let number =
        |name| num_attr(item, name).ok_or_else(|| corrupt("a spent-token record lacks a number"));
    Ok(Spend {
        spent_jti: attempt.spent_jti.clone(),
        sid: text(attr::SID)?.to_owned(),
        user_id: UserId::parse(text(attr::USER_ID)?)
            .ok_or_else(|| corrupt("a spent-token record has a bad user"))?,
        successor_jti: text(attr::SUCCESSOR_JTI)?.to_owned(),
        successor_iat: number(attr::SUCCESSOR_IAT)?,
        spent_at_ms: number(attr::SPENT_AT_MS)?,
        expires_at: number(attr::TTL)?,
    })
}

impl From<&UserRecord> for Item {
    fn from(user: &UserRecord) -> Self {
        let mut item = Item::from([
            (attr::PK.into(), s(keys::user(user.id))),
            (attr::ID.into(), s(user.id.to_string())),
            (attr::USERNAME.into(), s(user.username.as_str())),
            (attr::EMAIL.into(), s(user.email.as_str())),
            (attr::PASSWORD_HASH.into(), s(&user.password_hash)),
            (attr::TOKEN_VERSION.into(), n(user.token_version)),
            (attr::CREATED_AT.into(), rfc3339(user.created_at)),
            (attr::UPDATED_AT.into(), rfc3339(user.updated_at)),
        ]);
        if let Some(name) = &user.full_name {
            item.insert(attr::FULL_NAME.into(), s(name.as_str()));
        }
        if user.lockout != Lockout::default() {
            item.insert(attr::FAILED_LOGINS.into(), n(user.lockout.failures.into()));
            item.insert(attr::LOCKED_UNTIL.into(), n(user.lockout.locked_until_ms));
        }
        if let Some(code) = &user.reset_code {
            item.insert(attr::RESET_CODE_HASH.into(), s(&code.hash));
            item.insert(attr::RESET_CODE_EXPIRES_AT.into(), n(code.expires_at));
        }
        if user.email_verified {
            item.insert(attr::EMAIL_VERIFIED.into(), AttributeValue::Bool(true));
        }
        if let Some(code) = &user.verify_code {
            item.insert(attr::VERIFY_CODE_HASH.into(), s(&code.hash));
            item.insert(attr::VERIFY_CODE_EXPIRES_AT.into(), n(code.expires_at));
        }
        if let Some(pending) = &user.pending_email {
            item.insert(attr::PENDING_EMAIL.into(), s(pending.as_str()));
        }
        if let Some(totp) = &user.totp {
            item.insert(attr::TOTP_SECRET.into(), s(&totp.sealed_secret));
            if totp.enabled {
                item.insert(attr::TOTP_ENABLED.into(), AttributeValue::Bool(true));
            }
            if let Some(step) = totp.last_step {
                item.insert(attr::TOTP_LAST_STEP.into(), n(step));
            }
            if !totp.recovery_codes.is_empty() {
                let codes = AttributeValue::Ss(totp.recovery_codes.clone());
                item.insert(attr::RECOVERY_CODES.into(), codes);
            }
            if let Some(undo) = &totp.undo {
                item.insert(attr::TOTP_UNDO_HASH.into(), s(&undo.hash));
                item.insert(attr::TOTP_UNDO_EXPIRES_AT.into(), n(undo.expires_at));
            }
            if let Some(until) = totp.pending_until {
                item.insert(attr::TOTP_PENDING_UNTIL.into(), n(until));
            }
        }
        item
    }
}

/// A user's TOTP attributes, when it has a secret (pending or enabled).
fn totp_attrs(item: &Item) -> Option<TotpState> {
    Some(TotpState {
        sealed_secret: str_attr(item, attr::TOTP_SECRET)?.to_owned(),
        enabled: matches!(
            item.get(attr::TOTP_ENABLED),
            Some(AttributeValue::Bool(true))
        ),
        last_step: num_attr(item, attr::TOTP_LAST_STEP),
        recovery_codes: item
            .get(attr::RECOVERY_CODES)
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default(),
        undo: str_attr(item, attr::TOTP_UNDO_HASH)
            .zip(num_attr(item, attr::TOTP_UNDO_EXPIRES_AT))
            .map(|(hash, expires_at)| StoredCode {
                hash: hash.to_owned(),
                expires_at,
            }),
        pending_until: num_attr(item, attr::TOTP_PENDING_UNTIL),
    })
}

impl TryFrom<&Item> for UserRecord {
    type Error = StoreError;

    fn try_from(item: &Item) -> Result<Self, StoreError> {
        let text =
            |name| str_attr(item, name).ok_or_else(|| corrupt("a user item lacks an attribute"));
        let time = |name| {
            text(name).and_then(|v| {
                OffsetDateTime::parse(v, &Rfc3339)
                    .map_err(|_| corrupt("a user item has a bad date"))
            })
        };
        let bad = |_| corrupt("a user item has an invalid value");
        Ok(UserRecord {
            id: UserId::parse(text(attr::ID)?)
                .ok_or_else(|| corrupt("a user item has a bad id"))?,
            username: Username::parse(text(attr::USERNAME)?).map_err(bad)?,
            email: Email::parse(text(attr::EMAIL)?).map_err(bad)?,
            full_name: str_attr(item, attr::FULL_NAME)
                .map(FullName::parse)
                .transpose()
                .map_err(bad)?,
            password_hash: text(attr::PASSWORD_HASH)?.to_owned(),
            token_version: num_attr(item, attr::TOKEN_VERSION)
                .ok_or_else(|| corrupt("a user item has a bad token_version"))?,
            created_at: time(attr::CREATED_AT)?,
            updated_at: time(attr::UPDATED_AT)?,
            lockout: Lockout {
                failures: num_attr(item, attr::FAILED_LOGINS).map_or(0, saturating_u32),
                locked_until_ms: num_attr(item, attr::LOCKED_UNTIL).unwrap_or(0),
            },
            reset_code: code_attrs(item, attr::RESET_CODE_HASH, attr::RESET_CODE_EXPIRES_AT),
            // Accounts made before verification existed have no attribute: unverified.
            email_verified: matches!(
                item.get(attr::EMAIL_VERIFIED),
                Some(AttributeValue::Bool(true))
            ),
            verify_code: code_attrs(item, attr::VERIFY_CODE_HASH, attr::VERIFY_CODE_EXPIRES_AT),
            pending_email: str_attr(item, attr::PENDING_EMAIL)
                .map(Email::parse)
                .transpose()
                .map_err(bad)?,
            totp: totp_attrs(item),
        })
    }
}

/// The key of a session's record: its user's partition, its id.
pub(super) fn session_key(user_id: UserId, sid: &str) -> Item {
    Item::from([
        (attr::PK.into(), s(keys::user(user_id))),
        (attr::SK.into(), s(keys::session(sid))),
    ])
}

impl From<&SessionRecord> for Item {
    fn from(session: &SessionRecord) -> Self {
        let mut item = session_key(session.user_id, &session.sid);
        item.extend([
            (attr::CREATED_AT.into(), n(session.created_at)),
            (attr::LAST_USED_AT.into(), n(session.last_used_at)),
            (attr::EXPIRES_AT.into(), n(session.expires_at)),
            (attr::TOKEN_VERSION.into(), n(session.token_version)),
            (attr::TTL.into(), n(session.ttl())),
        ]);
        if let Some(agent) = &session.user_agent {
            item.insert(attr::USER_AGENT.into(), s(agent));
        }
        if let Some(client) = &session.client {
            item.insert(attr::CLIENT.into(), s(client));
        }
        item
    }
}

impl TryFrom<&Item> for SessionRecord {
    type Error = StoreError;

    fn try_from(item: &Item) -> Result<Self, StoreError> {
        let number =
            |name| num_attr(item, name).ok_or_else(|| corrupt("a session record lacks a number"));
        let user_id = str_attr(item, attr::PK)
            .and_then(|pk| pk.strip_prefix("USER#"))
            .and_then(UserId::parse)
            .ok_or_else(|| corrupt("a session record has a bad user"))?;
        let sid = str_attr(item, attr::SK)
            .and_then(|sk| sk.strip_prefix("SESSION#"))
            .ok_or_else(|| corrupt("a session record has a bad id"))?;
        Ok(SessionRecord {
            user_id,
            sid: sid.to_owned(),
            created_at: number(attr::CREATED_AT)?,
            last_used_at: number(attr::LAST_USED_AT)?,
            expires_at: number(attr::EXPIRES_AT)?,
            token_version: number(attr::TOKEN_VERSION)?,
            user_agent: str_attr(item, attr::USER_AGENT).map(str::to_owned),
            client: str_attr(item, attr::CLIENT).map(str::to_owned),
        })
    }
}

/// A stored code kept on an item as its hash and expiry attributes.
fn code_attrs(item: &Item, hash: &str, expires_at: &str) -> Option<StoredCode> {
    str_attr(item, hash).map(|hash| StoredCode {
        hash: hash.to_owned(),
        expires_at: num_attr(item, expires_at).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_items_round_trip() {
        let mut user = UserRecord::new(
            Username::parse("Alice").expect("valid"),
            Email::parse("alice@example.com").expect("valid"),
            Some(FullName::parse("Alice Liddell").expect("valid")),
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time"),
        );
        user.token_version = 7;
        user.updated_at = OffsetDateTime::from_unix_timestamp(1_700_000_100).expect("time");
        user.lockout = Lockout {
            failures: 6,
            locked_until_ms: 1_700_000_002_000,
        };
        user.reset_code = Some(StoredCode {
            hash: "ab12".into(),
            expires_at: 1_700_000_600,
        });
        user.verify_code = Some(StoredCode {
            hash: "cd34".into(),
            expires_at: 1_700_086_400,
        });
        let item = Item::from(&user);
        assert_eq!(UserRecord::try_from(&item).expect("parses"), user);
        user.email_verified = true;
        user.verify_code = None;
        user.pending_email = Some(Email::parse("alice@new.example").expect("valid"));
        let item = Item::from(&user);
        assert_eq!(
            str_attr(&item, "pk"),
            Some(format!("USER#{}", user.id).as_str())
        );
        assert_eq!(UserRecord::try_from(&item).expect("parses"), user);
        user.totp = Some(TotpState {
            sealed_secret: "v1.sealed".into(),
            enabled: false,
            last_step: None,
            recovery_codes: Vec::new(),
            undo: None,
            pending_until: Some(1_800_000_900),
        });
        assert_eq!(
            UserRecord::try_from(&Item::from(&user)).expect("pending"),
            user
        );
        user.totp = Some(TotpState {
            sealed_secret: "v1.sealed".into(),
            enabled: true,
            last_step: Some(56_789_012),
            recovery_codes: vec!["aa".into(), "bb".into()],
            undo: Some(StoredCode {
                hash: "cc".into(),
                expires_at: 1_800_000_000,
            }),
            pending_until: None,
        });
        let item = Item::from(&user);
        assert!(matches!(
            item.get("recovery_codes"),
            Some(AttributeValue::Ss(_))
        ));
        assert_eq!(UserRecord::try_from(&item).expect("enabled"), user);
        let mut broken = item.clone();
        broken.remove("email");
        assert!(UserRecord::try_from(&broken).is_err());
    }

    #[test]
    fn session_items_round_trip() {
        let mut session = SessionRecord {
            user_id: UserId::new(),
            sid: "0f6c1d9e-2a47-4d5b-9c1e-7b2f3a4d5e6f".into(),
            created_at: 1_700_000_000,
            last_used_at: 1_700_000_500,
            expires_at: 1_700_604_800,
            token_version: 3,
            user_agent: Some("Mozilla/5.0".into()),
            client: Some("9a8b7c".into()),
        };
        let item = Item::from(&session);
        assert_eq!(
            str_attr(&item, "sk"),
            Some(format!("SESSION#{}", session.sid).as_str())
        );
        assert_eq!(num_attr(&item, "ttl"), Some(1_700_604_830));
        assert_eq!(SessionRecord::try_from(&item).expect("parses"), session);
        session.user_agent = None;
        session.client = None;
        let item = Item::from(&session);
        assert_eq!(SessionRecord::try_from(&item).expect("parses"), session);
        let mut broken = item.clone();
        broken.remove("expires_at");
        assert!(SessionRecord::try_from(&broken).is_err());
    }
}
