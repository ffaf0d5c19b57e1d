//! The DynamoDB store, one file per entity (`users`, `sessions`, `codes`, `limits`) over the
//! shared plumbing here: strongly consistent reads (DB-04), conditional updates, and
//! transactions whose cancellation is read reason by reason and becomes a business outcome,
//! never a 500 (RL-02). Item mapping and attribute names are in `item`.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Put, ReturnValue, TransactWriteItem,
};
use time::OffsetDateTime;

use crate::domain::UserId;
use crate::store::{SessionRecord, StoreError, keys};
use item::{CONDITION_FAILED, Item, attr, n, rfc3339, s};

mod codes;
mod item;
mod limits;
mod mfa;
mod published;
mod sessions;
mod users;

/// A new password (`:h` at `:t`) raises the token version (`:one`) ...
const PASSWORD_SET: &str =
    "password_hash = :h, updated_at = :t, token_version = token_version + :one";
/// ... and clears failed sign-ins and any reset code.
const PASSWORD_REMOVE: &str =
    "failed_logins, locked_until_ms, reset_code_hash, reset_code_expires_at";

/// Transactions that lose a race on an item (`TransactionConflict`) are tried this many times.
const CONFLICT_ATTEMPTS: u32 = 4;
/// A batch read that leaves keys unprocessed (throttling) is tried this many times.
const BATCH_READ_ATTEMPTS: u32 = 4;

#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    users_table: String,
    tokens_table: String,
    sessions_table: String,
}

impl DynamoStore {
    pub fn new(
        client: Client,
        users_table: impl Into<String>,
        tokens_table: impl Into<String>,
    ) -> Self {
        Self {
            client,
            users_table: users_table.into(),
            tokens_table: tokens_table.into(),
            sessions_table: String::new(),
        }
    }

    /// The store with its sessions table (the functions that sign in, refresh, log out or list
    /// sessions need it; the key functions do not).
    #[must_use]
    pub fn with_sessions_table(mut self, sessions_table: impl Into<String>) -> Self {
        self.sessions_table = sessions_table.into();
        self
    }

    /// A `Put` of a new session's record.
    fn put_session(&self, session: &SessionRecord) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.sessions_table)
            .set_item(Some(Item::from(session)))
            .build()
            .map_err(unavailable)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    async fn get(&self, pk: String) -> Result<Option<Item>, StoreError> {
        self.get_in(&self.users_table, pk).await
    }

    /// A strongly consistent read (DB-04).
    async fn get_in(&self, table: &str, pk: String) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(table)
            .key(attr::PK, AttributeValue::S(pk))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output.item)
    }

    /// A `Put` into the users table that fails if the item exists.
    fn put_new(&self, item: Item) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.users_table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(unavailable)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// One conditional `UpdateItem` of a user's item: the item as it now is, or `Conflict` when
    /// `condition` does not hold (the shape every single-item change of a user shares).
    async fn update_user(
        &self,
        user_id: UserId,
        update: &str,
        condition: &str,
        values: &[(&str, AttributeValue)],
    ) -> Result<Item, StoreError> {
        let values = (!values.is_empty()).then(|| {
            values
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.clone()))
                .collect()
        });
        let result = self
            .client
            .update_item()
            .table_name(&self.users_table)
            .key(attr::PK, s(keys::user(user_id)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_values(values)
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        update_outcome(result)
    }

    /// A reset's password change, if `condition` holds: the new hash, the token version raised,
    /// failed sign-ins and any reset code cleared (`PASSWORD_SET`, `PASSWORD_REMOVE`), the address marked
    /// verified with any verification code dropped (the code came through it).
    async fn replace_password(
        &self,
        user_id: UserId,
        password_hash: &str,
        updated_at: OffsetDateTime,
        condition: &str,
        (name, value): (&str, AttributeValue),
    ) -> Result<(), StoreError> {
        let update = format!(
            "SET {PASSWORD_SET}, email_verified = :yes \
             REMOVE {PASSWORD_REMOVE}, verify_code_hash, verify_code_expires_at"
        );
        let values = [
            (":h", s(password_hash)),
            (":t", rfc3339(updated_at)),
            (":one", n(1)),
            (":yes", AttributeValue::Bool(true)),
            (name, value),
        ];
        self.update_user(user_id, &update, condition, &values)
            .await
            .map(drop)
    }

    /// Runs a transaction whose every condition guards against a concurrent change: a cancelled
    /// condition is a [`StoreError::Conflict`], any other cancellation (named `what`) an outage.
    async fn transact_or_conflict(
        &self,
        items: Vec<TransactWriteItem>,
        what: &str,
    ) -> Result<(), StoreError> {
        match self.transact(items, None).await? {
            Ok(()) => Ok(()),
            Err(reasons) if codes(&reasons).contains(&Some(CONDITION_FAILED)) => {
                Err(StoreError::Conflict)
            }
            Err(reasons) => Err(StoreError::Unavailable(
                format!("{what} cancelled: {:?}", codes(&reasons)).into(),
            )),
        }
    }

    /// Runs a transaction: `Ok(Ok(()))` when it committed, `Ok(Err(reasons))` when a condition
    /// cancelled it (one reason per action). A `TransactionConflict` (another transaction on
    /// the same item at the same moment) is retried with a short backoff.
    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
        idempotency_token: Option<String>,
    ) -> Result<Result<(), Vec<CancellationReason>>, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .set_client_request_token(idempotency_token.clone())
                .send()
                .await;
            let reasons = match result {
                Ok(_) => return Ok(Ok(())),
                Err(err) => cancellation_reasons(err)?,
            };
            if codes(&reasons).contains(&Some("TransactionConflict")) && attempt < CONFLICT_ATTEMPTS
            {
                tokio::time::sleep(backoff(attempt)).await;
                continue;
            }
            return Ok(Err(reasons));
        }
    }
}

/// The reasons of a cancelled transaction, one per action; any other failure is an outage.
fn cancellation_reasons(
    err: SdkError<TransactWriteItemsError>,
) -> Result<Vec<CancellationReason>, StoreError> {
    match err.into_service_error() {
        TransactWriteItemsError::TransactionCanceledException(cancelled) => {
            Ok(cancelled.cancellation_reasons.unwrap_or_default())
        }
        other => Err(unavailable(other)),
    }
}

fn codes(reasons: &[CancellationReason]) -> Vec<Option<&str>> {
    reasons.iter().map(|r| r.code.as_deref()).collect()
}

/// The item an update left (with `ReturnValues`), `Conflict` when its condition failed.
fn update_outcome(
    result: Result<
        aws_sdk_dynamodb::operation::update_item::UpdateItemOutput,
        SdkError<UpdateItemError>,
    >,
) -> Result<Item, StoreError> {
    match result {
        Ok(output) => Ok(output.attributes.unwrap_or_default()),
        Err(err) => match err.into_service_error() {
            UpdateItemError::ConditionalCheckFailedException(_) => Err(StoreError::Conflict),
            other => Err(unavailable(other)),
        },
    }
}

fn backoff(attempt: u32) -> Duration {
    let jitter = u64::from(rand::random::<u8>() % 20);
    Duration::from_millis(20 * u64::from(attempt) + jitter)
}

fn unavailable(err: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    // The whole chain: an SDK error's own text is only its kind ("unhandled error", "dispatch
    // failure"), which tells an operator nothing.
    let text = aws_sdk_dynamodb::error::DisplayErrorContext(&err).to_string();
    StoreError::Unavailable(text.into())
}

fn corrupt(what: &'static str) -> StoreError {
    StoreError::Unavailable(what.into())
}
