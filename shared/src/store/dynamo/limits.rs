//! Throttling state: password checks per account, trusted client, unknown identifier and
//! session, fixed-window counters and cooldowns, read together with the sign-in lookup and
//! consumed atomically.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};

use super::item::{CONDITION_FAILED, Item, attr, n, num_attr, s, str_attr};
use super::{
    BATCH_READ_ATTEMPTS, DynamoStore, backoff, codes, corrupt, unavailable, update_outcome,
};
use crate::crypto::saturating_u32;
use crate::domain::{Identifier, Lockout, UserId};
use crate::store::{Attempt, Counter, Limits, LockTarget, StoreError, keys};
use crate::throttle::{self, Quota};

/// The conditional write that takes one unit of a quota, as `consume` sends it alone or in a
/// transaction.
struct QuotaWrite {
    update: &'static str,
    condition: &'static str,
    names: HashMap<String, String>,
    values: Item,
}

impl QuotaWrite {
    fn of(quota: &Quota, now: u64) -> Self {
        let names = |pairs: [(&str, &str); 2]| {
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        };
        match quota {
            Quota::Counter {
                limit, resets_at, ..
            } => Self {
                update: "ADD #count :one SET #ttl = :ttl",
                condition: "attribute_not_exists(#count) OR #count < :limit",
                names: names([("#count", attr::COUNT), ("#ttl", attr::TTL)]),
                values: Item::from([
                    (":one".to_owned(), n(1)),
                    (":ttl".to_owned(), n(*resets_at)),
                    (":limit".to_owned(), n((*limit).into())),
                ]),
            },
            Quota::Cooldown { until, .. } => Self {
                update: "SET #until = :until, #ttl = :until",
                condition: "attribute_not_exists(#until) OR #until <= :now",
                names: names([("#until", attr::UNTIL), ("#ttl", attr::TTL)]),
                values: Item::from([
                    (":until".to_owned(), n(*until)),
                    (":now".to_owned(), n(now)),
                ]),
            },
        }
    }
}

/// How long until an exhausted quota frees up, from the item its failed condition returned.
fn quota_wait(quota: &Quota, item: Option<&Item>, now: u64) -> u64 {
    match quota {
        Quota::Counter { resets_at, .. } => resets_at.saturating_sub(now),
        Quota::Cooldown { until, .. } => item
            .and_then(|item| num_attr(item, attr::UNTIL))
            .unwrap_or(*until)
            .saturating_sub(now),
    }
}

impl DynamoStore {
    /// `consume` of a single quota: one conditional `UpdateItem`, half the write cost of a
    /// transaction, with the same answer.
    async fn consume_one(&self, quota: &Quota, now: u64) -> Result<Option<u64>, StoreError> {
        let write = QuotaWrite::of(quota, now);
        let result = self
            .client
            .update_item()
            .table_name(&self.tokens_table)
            .key(attr::PK, s(quota.key()))
            .update_expression(write.update)
            .condition_expression(write.condition)
            .set_expression_attribute_names(Some(write.names))
            .set_expression_attribute_values(Some(write.values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(err) => match err.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(failed) => {
                    Ok(Some(quota_wait(quota, failed.item.as_ref(), now).max(1)))
                }
                other => Err(unavailable(other)),
            },
        }
    }
}

/// How many times a reservation re-reads what racing writers left before it gives up.
const RESERVE_ATTEMPTS: u32 = 12;

impl DynamoStore {
    /// Where a lock target's failures live: table, key, and the name of the count attribute.
    fn lock_item<'a>(&'a self, target: &'a LockTarget) -> (&'a str, String, &'static str) {
        match target {
            LockTarget::User(id) => (&self.users_table, keys::user(*id), attr::FAILED_LOGINS),
            LockTarget::Counter { key, .. } | LockTarget::Trusted(key) => {
                (&self.tokens_table, key.clone(), attr::COUNT)
            }
        }
    }

    /// A conditional update of a lock item (`#count` and `#until` named) that gives way: when
    /// its condition fails, the item stays as the other writer left it.
    async fn update_lock(
        &self,
        target: &LockTarget,
        update: impl FnOnce(UpdateItemFluentBuilder) -> UpdateItemFluentBuilder,
    ) -> Result<(), StoreError> {
        let (table, key, count) = self.lock_item(target);
        let request = self
            .client
            .update_item()
            .table_name(table)
            .key(attr::PK, s(key))
            .expression_attribute_names("#count", count)
            .expression_attribute_names("#until", attr::LOCKED_UNTIL);
        match update_outcome(update(request).send().await) {
            Ok(_) | Err(StoreError::Conflict) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// One conditional count of a failure against `target`, from `state` to `failures` (and the
    /// lock `until`, if this failure sets one). `None` when it was counted; else the item as it is
    /// now (`None` inside if there is none), because someone counted meanwhile or it is locked.
    async fn count_failure(
        &self,
        target: &LockTarget,
        state: Lockout,
        failures: u32,
        until: Option<u64>,
        now_ms: u64,
    ) -> Result<Option<Option<Item>>, StoreError> {
        let (table, key, count) = self.lock_item(target);
        // Counted only if nobody counted since `state` was read, and only while unlocked.
        let mut condition = String::from(if state.failures == 0 {
            "(attribute_not_exists(#count) OR #count = :seen)"
        } else {
            "#count = :seen"
        });
        condition.push_str(" AND (attribute_not_exists(#until) OR #until <= :now)");
        let mut set = String::from("SET #count = :count");
        let mut update = self
            .client
            .update_item()
            .table_name(table)
            .key(attr::PK, s(&key))
            .expression_attribute_names("#count", count)
            .expression_attribute_names("#until", attr::LOCKED_UNTIL)
            .expression_attribute_values(":count", n(failures.into()))
            .expression_attribute_values(":seen", n(state.failures.into()))
            .expression_attribute_values(":now", n(now_ms))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if let Some(until) = until {
            set.push_str(", #until = :until");
            update = update.expression_attribute_values(":until", n(until));
        }
        match target {
            LockTarget::User(_) | LockTarget::Trusted(_) => {
                condition.insert_str(0, "attribute_exists(pk) AND ");
            }
            LockTarget::Counter { expires_at, .. } => {
                set.push_str(", #ttl = :ttl");
                update = update
                    .expression_attribute_names("#ttl", attr::TTL)
                    .expression_attribute_values(":ttl", n(*expires_at));
            }
        }
        let result = update
            .update_expression(set)
            .condition_expression(condition)
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(err) => match err.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(failed) => Ok(Some(failed.item)),
                other => Err(unavailable(other)),
            },
        }
    }
}

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
                    locked_until_ms: num_attr(&item, attr::LOCKED_UNTIL).unwrap_or(0),
                    key: pk,
                });
            }
        }
        Ok((owner, counters))
    }

    async fn reserve_attempt(
        &self,
        target: &LockTarget,
        seen: Lockout,
        threshold: u32,
        now_ms: u64,
    ) -> Result<Attempt, StoreError> {
        let count = self.lock_item(target).2;
        let mut state = seen;
        for _ in 0..RESERVE_ATTEMPTS {
            if state.locked_until_ms > now_ms {
                return Ok(Attempt::Locked {
                    until_ms: state.locked_until_ms,
                });
            }
            let failures = state.failures.saturating_add(1);
            let lock = throttle::lock_secs(failures, threshold).map(|secs| now_ms + secs * 1000);
            let counted = self.count_failure(target, state, failures, lock, now_ms);
            let Some(current) = counted.await? else {
                let locked_until_ms = lock.unwrap_or(state.locked_until_ms);
                return Ok(Attempt::Admitted {
                    lockout: Lockout {
                        failures,
                        locked_until_ms,
                    },
                });
            };
            state = match (current, target) {
                (Some(item), _) => Lockout {
                    failures: num_attr(&item, count).map_or(0, saturating_u32),
                    locked_until_ms: num_attr(&item, attr::LOCKED_UNTIL).unwrap_or(0),
                },
                (None, LockTarget::Counter { .. }) => Lockout::default(),
                // The account or the trust went away meanwhile: the next request reads afresh.
                (None, _) => {
                    return Ok(Attempt::Locked {
                        until_ms: now_ms + 1000,
                    });
                }
            };
        }
        // Still racing after every retry: a flood; the client may come back in a second.
        Ok(Attempt::Locked {
            until_ms: now_ms + 1000,
        })
    }

    async fn release_attempt(
        &self,
        target: &LockTarget,
        admitted: Lockout,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        // Someone counted since: the failure stays counted.
        self.update_lock(target, |update| {
            update
                .update_expression("SET #count = :released, #until = :until")
                .condition_expression("#count = :admitted")
                .expression_attribute_values(":admitted", n(admitted.failures.into()))
                .expression_attribute_values(
                    ":released",
                    n(admitted.failures.saturating_sub(1).into()),
                )
                .expression_attribute_values(":until", n(admitted.locked_until_ms.min(now_ms)))
        })
        .await
    }

    async fn clear_attempts(&self, target: &LockTarget) -> Result<(), StoreError> {
        // Never creates the item: a user or a trust that went away stays gone.
        self.update_lock(target, |update| {
            update
                .update_expression("REMOVE #count, #until")
                .condition_expression("attribute_exists(pk)")
        })
        .await
    }

    async fn trust_client(&self, key: &str, until: u64) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tokens_table)
            .key(attr::PK, s(key))
            .update_expression("SET #ttl = :until REMOVE #count, #until")
            .expression_attribute_names("#ttl", attr::TTL)
            .expression_attribute_names("#count", attr::COUNT)
            .expression_attribute_names("#until", attr::LOCKED_UNTIL)
            .expression_attribute_values(":until", n(until))
            .send()
            .await;
        update_outcome(result).map(drop)
    }

    async fn refund(&self, key: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tokens_table)
            .key(attr::PK, s(key))
            .update_expression("ADD #count :minus_one")
            .condition_expression("#count > :zero")
            .expression_attribute_names("#count", attr::COUNT)
            .expression_attribute_values(":minus_one", AttributeValue::N("-1".into()))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await;
        match update_outcome(result) {
            Ok(_) | Err(StoreError::Conflict) => Ok(()),
            Err(err) => Err(err),
        }
    }

    async fn consume(&self, quotas: &[Quota], now: u64) -> Result<Option<u64>, StoreError> {
        if let [quota] = quotas {
            return self.consume_one(quota, now).await;
        }
        let mut items = Vec::new();
        for quota in quotas {
            let write = QuotaWrite::of(quota, now);
            let update = Update::builder()
                .table_name(&self.tokens_table)
                .key(attr::PK, s(quota.key()))
                .update_expression(write.update)
                .condition_expression(write.condition)
                .set_expression_attribute_names(Some(write.names))
                .set_expression_attribute_values(Some(write.values))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(unavailable)?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        let Err(reasons) = self.transact(items, None).await? else {
            return Ok(None);
        };
        let mut wait = None;
        for (quota, reason) in quotas.iter().zip(&reasons) {
            if reason.code.as_deref() != Some(CONDITION_FAILED) {
                continue;
            }
            let secs = quota_wait(quota, reason.item.as_ref(), now);
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
