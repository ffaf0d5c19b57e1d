//! The DynamoDB [`UserStore`]. Reads are strongly consistent (DB-04); a cancelled transaction
//! is read reason by reason and becomes a business outcome, never a 500 (RL-02).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{BoxError, StoreError, UserStore, email_key, identifier_key, user_key, username_key};
use crate::domain::{Email, FullName, Identifier, UserId, UserRecord, Username};

/// Transactions that lose a race on an item (`TransactionConflict`) are tried this many times.
const CONFLICT_ATTEMPTS: u32 = 4;

#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    users_table: String,
}

type Item = HashMap<String, AttributeValue>;

impl DynamoStore {
    pub fn new(client: Client, users_table: impl Into<String>) -> Self {
        Self {
            client,
            users_table: users_table.into(),
        }
    }

    async fn get(&self, pk: String) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.users_table)
            .key("pk", AttributeValue::S(pk))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output.item)
    }

    fn put_new(&self, item: Item) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.users_table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(unavailable)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

impl UserStore for DynamoStore {
    async fn create_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let marker = |pk: String| {
            Item::from([
                ("pk".into(), s(pk)),
                ("user_id".into(), s(user.id.to_string())),
            ])
        };
        let items = vec![
            self.put_new(user_item(user))?,
            self.put_new(marker(email_key(user.email.as_str())))?,
            self.put_new(marker(username_key(&user.username.key())))?,
        ];
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                // Idempotency (RL-03): a retry of this very request cannot collide with itself.
                .client_request_token(user.id.to_string())
                .send()
                .await;
            let reasons = match result {
                Ok(_) => return Ok(()),
                Err(err) => cancellation_codes(err)?,
            };
            match reasons
                .iter()
                .map(Option::as_deref)
                .collect::<Vec<_>>()
                .as_slice()
            {
                [_, Some("ConditionalCheckFailed"), _] => return Err(StoreError::EmailTaken),
                [_, _, Some("ConditionalCheckFailed")] => return Err(StoreError::UsernameTaken),
                codes
                    if codes.contains(&Some("TransactionConflict"))
                        && attempt < CONFLICT_ATTEMPTS =>
                {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                codes => {
                    return Err(StoreError::Unavailable(
                        format!("registration cancelled: {codes:?}").into(),
                    ));
                }
            }
        }
    }

    async fn find_user_id(&self, identifier: &Identifier) -> Result<Option<UserId>, StoreError> {
        let Some(item) = self.get(identifier_key(identifier)).await? else {
            return Ok(None);
        };
        let id = str_attr(&item, "user_id").and_then(UserId::parse);
        id.map(Some)
            .ok_or_else(|| corrupt("a uniqueness marker has no user_id"))
    }

    async fn get_user(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        match self.get(user_key(id)).await? {
            None => Ok(None),
            Some(item) => parse_user(&item).map(Some),
        }
    }
}

/// The reason codes of a cancelled transaction, one per action; any other failure is an outage.
fn cancellation_codes(
    err: SdkError<TransactWriteItemsError>,
) -> Result<Vec<Option<String>>, StoreError> {
    match err.into_service_error() {
        TransactWriteItemsError::TransactionCanceledException(cancelled) => Ok(cancelled
            .cancellation_reasons
            .unwrap_or_default()
            .into_iter()
            .map(|reason| reason.code)
            .collect()),
        other => Err(unavailable(other)),
    }
}

fn backoff(attempt: u32) -> Duration {
    let jitter = u64::from(rand::random::<u8>() % 20);
    Duration::from_millis(20 * u64::from(attempt) + jitter)
}

fn unavailable(err: impl Into<BoxError>) -> StoreError {
    StoreError::Unavailable(err.into())
}

fn corrupt(what: &'static str) -> StoreError {
    StoreError::Unavailable(what.into())
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn str_attr<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn rfc3339(at: OffsetDateTime) -> AttributeValue {
    s(at.format(&Rfc3339).unwrap_or_default())
}

fn user_item(user: &UserRecord) -> Item {
    let mut item = Item::from([
        ("pk".into(), s(user_key(user.id))),
        ("id".into(), s(user.id.to_string())),
        ("username".into(), s(user.username.as_str())),
        ("email".into(), s(user.email.as_str())),
        ("password_hash".into(), s(&user.password_hash)),
        (
            "token_version".into(),
            AttributeValue::N(user.token_version.to_string()),
        ),
        ("created_at".into(), rfc3339(user.created_at)),
        ("updated_at".into(), rfc3339(user.updated_at)),
    ]);
    if let Some(name) = &user.full_name {
        item.insert("full_name".into(), s(name.as_str()));
    }
    item
}

fn parse_user(item: &Item) -> Result<UserRecord, StoreError> {
    let text = |name| str_attr(item, name).ok_or_else(|| corrupt("a user item lacks an attribute"));
    let time = |name| {
        text(name).and_then(|v| {
            OffsetDateTime::parse(v, &Rfc3339).map_err(|_| corrupt("a user item has a bad date"))
        })
    };
    let bad = |_| corrupt("a user item has an invalid value");
    Ok(UserRecord {
        id: UserId::parse(text("id")?).ok_or_else(|| corrupt("a user item has a bad id"))?,
        username: Username::parse(text("username")?).map_err(bad)?,
        email: Email::parse(text("email")?).map_err(bad)?,
        full_name: str_attr(item, "full_name")
            .map(FullName::parse)
            .transpose()
            .map_err(bad)?,
        password_hash: text("password_hash")?.to_owned(),
        token_version: item
            .get("token_version")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| corrupt("a user item has a bad token_version"))?,
        created_at: time("created_at")?,
        updated_at: time("updated_at")?,
    })
}

/// Counts the DynamoDB calls a client makes, by operation, with an SDK interceptor: the
/// per-endpoint call budgets are asserted with it.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug, Clone, Default)]
pub struct CallCounter(std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, u32>>>);

#[cfg(any(test, feature = "test-util"))]
impl CallCounter {
    /// Calls made so far, by operation name (`GetItem`, `TransactWriteItems`, …).
    pub fn calls(&self) -> std::collections::BTreeMap<String, u32> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn total(&self) -> u32 {
        self.calls().values().sum()
    }

    pub fn reset(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// A client for `sdk` whose calls this counter counts.
    pub fn client(&self, sdk: &aws_config::SdkConfig) -> Client {
        let config = aws_sdk_dynamodb::config::Builder::from(sdk)
            .interceptor(self.clone())
            .build();
        Client::from_conf(config)
    }
}

#[cfg(any(test, feature = "test-util"))]
impl aws_sdk_dynamodb::config::Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_serialization(
        &self,
        _context: &aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef<
            '_,
        >,
        _components: &aws_sdk_dynamodb::config::RuntimeComponents,
        cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        use aws_smithy_runtime_api::client::orchestrator::Metadata;
        if let Some(metadata) = cfg.load::<Metadata>() {
            let mut calls = self.0.lock().unwrap_or_else(|p| p.into_inner());
            *calls.entry(metadata.name().to_owned()).or_default() += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_items_round_trip() {
        let user = UserRecord {
            id: UserId::new(),
            username: Username::parse("Alice").expect("valid"),
            email: Email::parse("alice@example.com").expect("valid"),
            full_name: Some(FullName::parse("Alice Liddell").expect("valid")),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            token_version: 7,
            created_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time"),
            updated_at: OffsetDateTime::from_unix_timestamp(1_700_000_100).expect("time"),
        };
        let item = user_item(&user);
        assert_eq!(
            str_attr(&item, "pk"),
            Some(format!("USER#{}", user.id).as_str())
        );
        assert_eq!(parse_user(&item).expect("parses"), user);
        let mut broken = item.clone();
        broken.remove("email");
        assert!(parse_user(&broken).is_err());
    }
}
