//! Throttling state: failed sign-ins per account and per unknown identifier, fixed-window
//! counters and cooldowns, read together with the sign-in lookup and consumed atomically.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    KeysAndAttributes, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

use super::item::{CONDITION_FAILED, Item, attr, n, num_attr, s, str_attr};
use super::{
    BATCH_READ_ATTEMPTS, DynamoStore, backoff, codes, corrupt, unavailable, update_outcome,
};
use crate::crypto::saturating_u32;
use crate::domain::{Identifier, Lockout, UserId};
use crate::store::{Counter, Limits, LockTarget, StoreError, keys};
use crate::throttle::{self, Quota};

impl Limits for DynamoStore {
    async fn find_user_id_with_counters(
        &self,
        identifier: Option<&Identifier>,
        counter_keys: &[String],
    ) -> Result<(Option<UserId>, Vec<Counter>), StoreError> {
        let marker = identifier.map(keys::identifier);
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
        for attempt in 1..=BATCH_READ_ATTEMPTS {
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
            if attempt == BATCH_READ_ATTEMPTS {
                return Err(corrupt("a batch read kept leaving keys unprocessed"));
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        let mut owner = None;
        let mut counters = Vec::new();
        for item in found {
            let pk = str_attr(&item, attr::PK).unwrap_or_default().to_owned();
            if Some(&pk) == marker.as_ref() {
                owner = str_attr(&item, attr::USER_ID).and_then(UserId::parse);
            } else {
                counters.push(Counter {
                    count: num_attr(&item, attr::COUNT).unwrap_or(0),
                    locked_until: num_attr(&item, attr::LOCKED_UNTIL).unwrap_or(0),
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
            LockTarget::User(id) => (&self.users_table, keys::user(*id), "failed_logins"),
            LockTarget::Identifier(key) => (&self.tokens_table, key.clone(), "count"),
        };
        let mut update = self
            .client
            .update_item()
            .table_name(table)
            .key(attr::PK, s(&key))
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
            locked_until: num_attr(&item, attr::LOCKED_UNTIL).unwrap_or(0),
        };
        if let Some(secs) = throttle::lock_secs(failures, threshold) {
            lockout.locked_until = now + secs;
            let result = self
                .client
                .update_item()
                .table_name(table)
                .key(attr::PK, s(&key))
                .update_expression("SET locked_until = :until")
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_values(":until", n(lockout.locked_until))
                .send()
                .await;
            update_outcome(result)?;
        }
        Ok(lockout)
    }

    async fn clear_login_failures(&self, user_id: UserId) -> Result<(), StoreError> {
        self.update_user(
            user_id,
            "REMOVE failed_logins, locked_until",
            "attribute_exists(pk)",
            &[],
        )
        .await
        .map(drop)
    }

    async fn increment(&self, key: &str, expires_at: u64) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tokens_table)
            .key(attr::PK, s(key))
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
                .key(attr::PK, s(quota.key()))
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
            if reason.code.as_deref() != Some(CONDITION_FAILED) {
                continue;
            }
            let secs = match quota {
                Quota::Counter { resets_at, .. } => resets_at.saturating_sub(now),
                Quota::Cooldown { until, .. } => reason
                    .item
                    .as_ref()
                    .and_then(|item| num_attr(item, attr::UNTIL))
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
