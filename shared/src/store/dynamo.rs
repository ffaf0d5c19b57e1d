//! The DynamoDB [`UserStore`]. Reads are strongly consistent (DB-04); a cancelled transaction
//! is read reason by reason and becomes a business outcome, never a 500 (RL-02).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ConditionCheck, Delete, KeysAndAttributes, Put,
    ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{
    Counter, LockTarget, Rotation, RotationOutcome, StoreError, UserStore, email_key,
    identifier_key, session_key, spent_token_key, user_key, username_key,
};
use crate::crypto::saturating_u32;
use crate::domain::{
    Email, FullName, Identifier, Lockout, StoredResetCode, UserId, UserRecord, Username,
};
use crate::throttle::{self, Quota};

/// Transactions that lose a race on an item (`TransactionConflict`) are tried this many times.
const CONFLICT_ATTEMPTS: u32 = 4;

#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    users_table: String,
    tokens_table: String,
}

type Item = HashMap<String, AttributeValue>;

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
        }
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
            .key("pk", AttributeValue::S(pk))
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
        // Idempotency (RL-03): a retry of this very request cannot collide with itself.
        let Err(reasons) = self.transact(items, Some(user.id.to_string())).await? else {
            return Ok(());
        };
        match codes(&reasons).as_slice() {
            [_, Some("ConditionalCheckFailed"), _] => Err(StoreError::EmailTaken),
            [_, _, Some("ConditionalCheckFailed")] => Err(StoreError::UsernameTaken),
            codes => Err(StoreError::Unavailable(
                format!("registration cancelled: {codes:?}").into(),
            )),
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

    async fn rotate_refresh_token(
        &self,
        rotation: &Rotation,
    ) -> Result<RotationOutcome, StoreError> {
        let spent = Put::builder()
            .table_name(&self.tokens_table)
            .set_item(Some(spent_item(rotation)))
            .condition_expression("attribute_not_exists(pk)")
            // A lost race hands back the winner's record: no second read to find the successor.
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(unavailable)?;
        let live_session = ConditionCheck::builder()
            .table_name(&self.tokens_table)
            .key("pk", s(session_key(&rotation.sid)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(unavailable)?;
        let items = vec![
            TransactWriteItem::builder().put(spent).build(),
            TransactWriteItem::builder()
                .condition_check(live_session)
                .build(),
        ];
        let Err(reasons) = self.transact(items, None).await? else {
            return Ok(RotationOutcome::Rotated);
        };
        const FAILED: Option<&str> = Some("ConditionalCheckFailed");
        match codes(&reasons).as_slice() {
            [FAILED, session] => {
                let winner = match reasons.first().and_then(|r| r.item.clone()) {
                    Some(item) => item,
                    None => self
                        .get_in(&self.tokens_table, spent_token_key(&rotation.spent_jti))
                        .await?
                        .ok_or_else(|| corrupt("a spent token's record vanished"))?,
                };
                Ok(RotationOutcome::AlreadySpent {
                    winner: parse_spent(&winner, rotation)?,
                    session_revoked: *session == FAILED,
                })
            }
            [_, FAILED] => Ok(RotationOutcome::SessionRevoked),
            codes => Err(StoreError::Unavailable(
                format!("rotation cancelled: {codes:?}").into(),
            )),
        }
    }

    async fn is_spent(&self, jti: &str) -> Result<bool, StoreError> {
        Ok(self
            .get_in(&self.tokens_table, spent_token_key(jti))
            .await?
            .is_some())
    }

    async fn revoke_session(
        &self,
        sid: &str,
        user_id: UserId,
        reason: &'static str,
        revoked_at: u64,
        expires_at: u64,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.tokens_table)
            .item("pk", s(session_key(sid)))
            .item("user_id", s(user_id.to_string()))
            .item("reason", s(reason))
            .item("revoked_at", n(revoked_at))
            .item("ttl", n(expires_at))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => match err.into_service_error() {
                PutItemError::ConditionalCheckFailedException(_) => Ok(()),
                other => Err(unavailable(other)),
            },
        }
    }

    async fn revoke_all_sessions(
        &self,
        user_id: UserId,
        seen_version: u64,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.users_table)
            .key("pk", s(user_key(user_id)))
            .update_expression("SET token_version = token_version + :one")
            .condition_expression("token_version = :seen")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":seen", n(seen_version))
            .send()
            .await;
        match update_outcome(result) {
            // Already raised since, or the user is gone: either way nothing older survives.
            Ok(_) | Err(StoreError::Conflict) => Ok(()),
            Err(err) => Err(err),
        }
    }

    async fn update_profile(&self, old: &UserRecord, new: &UserRecord) -> Result<(), StoreError> {
        let id = s(old.id.to_string());
        let mut set = "SET username = :u, email = :e, updated_at = :t".to_owned();
        let mut values = Item::from([
            (":u".into(), s(new.username.as_str())),
            (":e".into(), s(new.email.as_str())),
            (":t".into(), rfc3339(new.updated_at)),
            (":old_u".into(), s(old.username.as_str())),
            (":old_e".into(), s(old.email.as_str())),
        ]);
        match &new.full_name {
            Some(name) => {
                set.push_str(", full_name = :f");
                values.insert(":f".into(), s(name.as_str()));
            }
            None => set.push_str(" REMOVE full_name"),
        }
        let user = Update::builder()
            .table_name(&self.users_table)
            .key("pk", s(user_key(old.id)))
            .update_expression(set)
            .condition_expression("email = :old_e AND username = :old_u")
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(unavailable)?;
        let mut items = vec![TransactWriteItem::builder().update(user).build()];
        // Each moved record: free the old one (still ours), take the new one (still free).
        let mut takes = Vec::new();
        for (old_key, new_key, taken) in [
            (
                email_key(old.email.as_str()),
                email_key(new.email.as_str()),
                StoreError::EmailTaken,
            ),
            (
                username_key(&old.username.key()),
                username_key(&new.username.key()),
                StoreError::UsernameTaken,
            ),
        ] {
            if old_key == new_key {
                continue;
            }
            let free = Delete::builder()
                .table_name(&self.users_table)
                .key("pk", s(old_key))
                .condition_expression("user_id = :id")
                .expression_attribute_values(":id", id.clone())
                .build()
                .map_err(unavailable)?;
            items.push(TransactWriteItem::builder().delete(free).build());
            let marker = Item::from([("pk".into(), s(new_key)), ("user_id".into(), id.clone())]);
            items.push(self.put_new(marker)?);
            takes.push((items.len() - 1, taken));
        }
        let Err(reasons) = self.transact(items, None).await? else {
            return Ok(());
        };
        let codes = codes(&reasons);
        for (index, taken) in takes {
            if codes.get(index) == Some(&Some("ConditionalCheckFailed")) {
                return Err(taken);
            }
        }
        if codes.contains(&Some("ConditionalCheckFailed")) {
            return Err(StoreError::Conflict);
        }
        Err(StoreError::Unavailable(
            format!("profile update cancelled: {codes:?}").into(),
        ))
    }

    async fn set_password(
        &self,
        user_id: UserId,
        seen_version: u64,
        password_hash: &str,
        updated_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.replace_password(
            user_id,
            password_hash,
            updated_at,
            "token_version = :seen",
            (":seen", n(seen_version)),
        )
        .await
    }

    async fn store_reset_code(
        &self,
        user_id: UserId,
        code: &StoredResetCode,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.users_table)
            .key("pk", s(user_key(user_id)))
            .update_expression(
                "SET reset_code_hash = :h, reset_code_expires_at = :x, reset_code_attempts = :zero",
            )
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":h", s(&code.hash))
            .expression_attribute_values(":x", n(code.expires_at))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await;
        update_outcome(result).map(|_| ())
    }

    async fn attempt_reset_code(
        &self,
        user_id: UserId,
        max_attempts: u32,
    ) -> Result<Option<UserRecord>, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.users_table)
            .key("pk", s(user_key(user_id)))
            .update_expression("SET reset_code_attempts = reset_code_attempts + :one")
            .condition_expression(
                "attribute_exists(reset_code_hash) AND reset_code_attempts < :max",
            )
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(max_attempts.into()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match update_outcome(result) {
            Ok(item) => parse_user(&item).map(Some),
            Err(StoreError::Conflict) => Ok(None),
            Err(other) => Err(other),
        }
    }

    async fn reset_password(
        &self,
        user_id: UserId,
        code_hash: &str,
        password_hash: &str,
        updated_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.replace_password(
            user_id,
            password_hash,
            updated_at,
            "reset_code_hash = :code",
            (":code", s(code_hash)),
        )
        .await
    }

    async fn delete_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let id = s(user.id.to_string());
        let mut items = Vec::new();
        for (key, condition) in [
            (user_key(user.id), "attribute_exists(pk)"),
            (email_key(user.email.as_str()), "user_id = :id"),
            (username_key(&user.username.key()), "user_id = :id"),
        ] {
            let mut delete = Delete::builder()
                .table_name(&self.users_table)
                .key("pk", s(key))
                .condition_expression(condition);
            if condition.contains(":id") {
                delete = delete.expression_attribute_values(":id", id.clone());
            }
            items.push(
                TransactWriteItem::builder()
                    .delete(delete.build().map_err(unavailable)?)
                    .build(),
            );
        }
        match self.transact(items, None).await? {
            Ok(()) => Ok(()),
            Err(reasons) if codes(&reasons).contains(&Some("ConditionalCheckFailed")) => {
                Err(StoreError::Conflict)
            }
            Err(reasons) => Err(StoreError::Unavailable(
                format!("deletion cancelled: {:?}", codes(&reasons)).into(),
            )),
        }
    }

    async fn find_user_id_with_counters(
        &self,
        identifier: Option<&Identifier>,
        counter_keys: &[String],
    ) -> Result<(Option<UserId>, Vec<Counter>), StoreError> {
        let marker = identifier.map(identifier_key);
        let keys = |pks: Vec<String>| {
            let keys = pks
                .into_iter()
                .map(|pk| Item::from([("pk".to_owned(), s(pk))]))
                .collect();
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(unavailable)
        };
        let mut request = HashMap::new();
        if let Some(marker) = &marker {
            request.insert(self.users_table.clone(), keys(vec![marker.clone()])?);
        }
        if !counter_keys.is_empty() {
            request.insert(self.tokens_table.clone(), keys(counter_keys.to_vec())?);
        }
        let mut found: Vec<Item> = Vec::new();
        if request.is_empty() {
            return Ok((None, Vec::new()));
        }
        for attempt in 1..=CONFLICT_ATTEMPTS {
            let output = self
                .client
                .batch_get_item()
                .set_request_items(Some(request))
                .send()
                .await
                .map_err(unavailable)?;
            found.extend(output.responses.unwrap_or_default().into_values().flatten());
            request = output.unprocessed_keys.unwrap_or_default();
            if request.is_empty() {
                break;
            }
            if attempt == CONFLICT_ATTEMPTS {
                return Err(corrupt("a batch read kept leaving keys unprocessed"));
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        let mut owner = None;
        let mut counters = Vec::new();
        for item in found {
            let pk = str_attr(&item, "pk").unwrap_or_default().to_owned();
            if Some(&pk) == marker.as_ref() {
                owner = str_attr(&item, "user_id").and_then(UserId::parse);
            } else {
                counters.push(Counter {
                    count: num_attr(&item, "count").unwrap_or(0),
                    locked_until: num_attr(&item, "locked_until").unwrap_or(0),
                    key: pk,
                });
            }
        }
        Ok((owner, counters))
    }

    async fn record_login_failure(
        &self,
        target: &LockTarget,
        threshold: u32,
        now: u64,
        expires_at: u64,
    ) -> Result<Lockout, StoreError> {
        let (table, key, attribute) = match target {
            LockTarget::User(id) => (&self.users_table, user_key(*id), "failed_logins"),
            LockTarget::Identifier(key) => (&self.tokens_table, key.clone(), "count"),
        };
        let mut update = self
            .client
            .update_item()
            .table_name(table)
            .key("pk", s(&key))
            .expression_attribute_names("#n", attribute)
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew);
        update = match target {
            LockTarget::User(_) => update
                .update_expression("ADD #n :one")
                .condition_expression("attribute_exists(pk)"),
            LockTarget::Identifier(_) => update
                .update_expression("ADD #n :one SET #ttl = :ttl")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":ttl", n(expires_at)),
        };
        let item = update_outcome(update.send().await)?;
        let failures = num_attr(&item, attribute).map_or(0, saturating_u32);
        let mut lockout = Lockout {
            failures,
            locked_until: num_attr(&item, "locked_until").unwrap_or(0),
        };
        if let Some(secs) = throttle::lock_secs(failures, threshold) {
            lockout.locked_until = now + secs;
            let result = self
                .client
                .update_item()
                .table_name(table)
                .key("pk", s(&key))
                .update_expression("SET locked_until = :until")
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_values(":until", n(lockout.locked_until))
                .send()
                .await;
            update_outcome(result)?;
        }
        Ok(lockout)
    }

    async fn upgrade_password_hash(
        &self,
        user_id: UserId,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.users_table)
            .key("pk", s(user_key(user_id)))
            .update_expression("SET password_hash = :new")
            .condition_expression("password_hash = :old")
            .expression_attribute_values(":new", s(new_hash))
            .expression_attribute_values(":old", s(old_hash))
            .send()
            .await;
        update_outcome(result).map(|_| ())
    }

    async fn clear_login_failures(&self, user_id: UserId) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.users_table)
            .key("pk", s(user_key(user_id)))
            .update_expression("REMOVE failed_logins, locked_until")
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        update_outcome(result).map(|_| ())
    }

    async fn increment(&self, key: &str, expires_at: u64) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tokens_table)
            .key("pk", s(key))
            .update_expression("ADD #count :one SET #ttl = if_not_exists(#ttl, :ttl)")
            .expression_attribute_names("#count", "count")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":ttl", n(expires_at))
            .send()
            .await;
        update_outcome(result).map(|_| ())
    }

    async fn consume(&self, quotas: &[Quota], now: u64) -> Result<Option<u64>, StoreError> {
        let mut items = Vec::new();
        for quota in quotas {
            let update = Update::builder()
                .table_name(&self.tokens_table)
                .key("pk", s(quota.key()))
                .expression_attribute_names("#ttl", "ttl")
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                );
            let update = match quota {
                Quota::Counter {
                    limit, resets_at, ..
                } => update
                    .update_expression("ADD #count :one SET #ttl = :ttl")
                    .condition_expression("attribute_not_exists(#count) OR #count < :limit")
                    .expression_attribute_names("#count", "count")
                    .expression_attribute_values(":one", n(1))
                    .expression_attribute_values(":ttl", n(*resets_at))
                    .expression_attribute_values(":limit", n((*limit).into())),
                Quota::Cooldown { until, .. } => update
                    .update_expression("SET #until = :until, #ttl = :until")
                    .condition_expression("attribute_not_exists(#until) OR #until <= :now")
                    .expression_attribute_names("#until", "until")
                    .expression_attribute_values(":until", n(*until))
                    .expression_attribute_values(":now", n(now)),
            };
            items.push(
                TransactWriteItem::builder()
                    .update(update.build().map_err(unavailable)?)
                    .build(),
            );
        }
        let Err(reasons) = self.transact(items, None).await? else {
            return Ok(None);
        };
        let mut wait = None;
        for (quota, reason) in quotas.iter().zip(&reasons) {
            if reason.code.as_deref() != Some("ConditionalCheckFailed") {
                continue;
            }
            let secs = match quota {
                Quota::Counter { resets_at, .. } => resets_at.saturating_sub(now),
                Quota::Cooldown { until, .. } => reason
                    .item
                    .as_ref()
                    .and_then(|item| num_attr(item, "until"))
                    .unwrap_or(*until)
                    .saturating_sub(now),
            };
            wait = Some(wait.map_or(secs, |w: u64| w.max(secs)));
        }
        match wait {
            Some(secs) => Ok(Some(secs.max(1))),
            None => Err(StoreError::Unavailable(
                format!("quota update cancelled: {:?}", codes(&reasons)).into(),
            )),
        }
    }
}

impl DynamoStore {
    /// Sets a new password hash, raises the token version and clears failed sign-ins and any
    /// reset code, if `condition` holds.
    async fn replace_password(
        &self,
        user_id: UserId,
        password_hash: &str,
        updated_at: OffsetDateTime,
        condition: &str,
        (name, value): (&str, AttributeValue),
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.users_table)
            .key("pk", s(user_key(user_id)))
            .update_expression(
                "SET password_hash = :h, updated_at = :t, token_version = token_version + :one \
                 REMOVE failed_logins, locked_until, reset_code_hash, reset_code_expires_at, reset_code_attempts",
            )
            .condition_expression(condition)
            .expression_attribute_values(":h", s(password_hash))
            .expression_attribute_values(":t", rfc3339(updated_at))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(name, value)
            .send()
            .await;
        update_outcome(result).map(|_| ())
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

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn num_attr(item: &Item, name: &str) -> Option<u64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

fn spent_item(rotation: &Rotation) -> Item {
    Item::from([
        ("pk".into(), s(spent_token_key(&rotation.spent_jti))),
        ("sid".into(), s(&rotation.sid)),
        ("user_id".into(), s(rotation.user_id.to_string())),
        ("successor_jti".into(), s(&rotation.successor_jti)),
        ("successor_iat".into(), n(rotation.successor_iat)),
        ("spent_at_ms".into(), n(rotation.spent_at_ms)),
        ("ttl".into(), n(rotation.expires_at)),
    ])
}

/// The winning rotation of `attempt.spent_jti`, as stored.
fn parse_spent(item: &Item, attempt: &Rotation) -> Result<Rotation, StoreError> {
    let text = |name| {
        str_attr(item, name).ok_or_else(|| corrupt("a spent-token record lacks an attribute"))
    };
    let number =
        |name| num_attr(item, name).ok_or_else(|| corrupt("a spent-token record lacks a number"));
    Ok(Rotation {
        spent_jti: attempt.spent_jti.clone(),
        sid: text("sid")?.to_owned(),
        user_id: UserId::parse(text("user_id")?)
            .ok_or_else(|| corrupt("a spent-token record has a bad user"))?,
        successor_jti: text("successor_jti")?.to_owned(),
        successor_iat: number("successor_iat")?,
        spent_at_ms: number("spent_at_ms")?,
        expires_at: number("ttl")?,
    })
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
        ("token_version".into(), n(user.token_version)),
        ("created_at".into(), rfc3339(user.created_at)),
        ("updated_at".into(), rfc3339(user.updated_at)),
    ]);
    if let Some(name) = &user.full_name {
        item.insert("full_name".into(), s(name.as_str()));
    }
    if user.lockout != Lockout::default() {
        item.insert("failed_logins".into(), n(user.lockout.failures.into()));
        item.insert("locked_until".into(), n(user.lockout.locked_until));
    }
    if let Some(code) = &user.reset_code {
        item.insert("reset_code_hash".into(), s(&code.hash));
        item.insert("reset_code_expires_at".into(), n(code.expires_at));
        item.insert("reset_code_attempts".into(), n(code.attempts.into()));
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
        token_version: num_attr(item, "token_version")
            .ok_or_else(|| corrupt("a user item has a bad token_version"))?,
        created_at: time("created_at")?,
        updated_at: time("updated_at")?,
        lockout: Lockout {
            failures: num_attr(item, "failed_logins").map_or(0, saturating_u32),
            locked_until: num_attr(item, "locked_until").unwrap_or(0),
        },
        reset_code: str_attr(item, "reset_code_hash").map(|hash| StoredResetCode {
            hash: hash.to_owned(),
            expires_at: num_attr(item, "reset_code_expires_at").unwrap_or(0),
            attempts: num_attr(item, "reset_code_attempts").map_or(u32::MAX, saturating_u32),
        }),
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
            locked_until: 1_700_000_002,
        };
        user.reset_code = Some(StoredResetCode {
            hash: "ab12".into(),
            expires_at: 1_700_000_600,
            attempts: 2,
        });
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
