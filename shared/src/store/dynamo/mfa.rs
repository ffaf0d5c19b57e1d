//! Two-step sign-in: a user's TOTP attributes, and the challenges of sign-ins waiting for
//! their second factor (tokens table). A factor is only ever accepted by a conditional write
//! that spends it: the last accepted step moves forward, or the recovery code's hash leaves
//! the user's string set.

use aws_sdk_dynamodb::types::{AttributeValue, Delete, ReturnValue, TransactWriteItem, Update};

use time::OffsetDateTime;

use super::item::{Item, attr, n, num_attr, rfc3339, s, str_attr};
use super::{DynamoStore, unavailable, update_outcome};
use crate::crypto::saturating_u32;
use crate::domain::{StoredCode, UserId};
use crate::store::{Mfa, MfaChallenge, SecondFactor, SessionRecord, StoreError, keys};

/// Every TOTP attribute of a user's item.
const TOTP_ATTRIBUTES: &str = "totp_secret, totp_enabled, totp_last_step, recovery_codes, totp_undo_hash, totp_undo_expires_at";

/// The update and condition that spend `factor`, on an enabled TOTP, with their values.
fn spend(
    factor: &SecondFactor,
) -> (
    &'static str,
    &'static str,
    Vec<(&'static str, AttributeValue)>,
) {
    match factor {
        SecondFactor::Totp { step } => (
            "SET totp_last_step = :step",
            "totp_enabled = :on AND (attribute_not_exists(totp_last_step) OR totp_last_step < :step)",
            vec![(":on", AttributeValue::Bool(true)), (":step", n(*step))],
        ),
        SecondFactor::RecoveryCode { hash } => (
            "DELETE recovery_codes :spent",
            "totp_enabled = :on AND contains(recovery_codes, :code)",
            vec![
                (":on", AttributeValue::Bool(true)),
                (":spent", AttributeValue::Ss(vec![hash.clone()])),
                (":code", s(hash)),
            ],
        ),
    }
}

fn values(
    pairs: Vec<(&'static str, AttributeValue)>,
) -> std::collections::HashMap<String, AttributeValue> {
    pairs
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

impl Mfa for DynamoStore {
    async fn begin_totp(
        &self,
        user_id: UserId,
        sealed_secret: &str,
        pending_until: u64,
    ) -> Result<(), StoreError> {
        self.update_user(
            user_id,
            "SET totp_secret = :secret, totp_pending_until = :until \
             REMOVE totp_last_step, recovery_codes",
            "attribute_exists(pk) AND attribute_not_exists(totp_enabled)",
            &[(":secret", s(sealed_secret)), (":until", n(pending_until))],
        )
        .await
        .map(drop)
    }

    async fn enable_totp(
        &self,
        user_id: UserId,
        sealed_secret: &str,
        step: u64,
        recovery_codes: &[String],
        undo: &StoredCode,
    ) -> Result<(), StoreError> {
        self.update_user(
            user_id,
            "SET totp_enabled = :on, totp_last_step = :step, recovery_codes = :codes, \
             totp_undo_hash = :undo, totp_undo_expires_at = :undo_until \
             REMOVE totp_pending_until",
            "totp_secret = :secret AND attribute_not_exists(totp_enabled)",
            &[
                (":on", AttributeValue::Bool(true)),
                (":step", n(step)),
                (":codes", AttributeValue::Ss(recovery_codes.to_vec())),
                (":undo", s(&undo.hash)),
                (":undo_until", n(undo.expires_at)),
                (":secret", s(sealed_secret)),
            ],
        )
        .await
        .map(drop)
    }

    async fn undo_totp(
        &self,
        user_id: UserId,
        undo_hash: &str,
        updated_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.update_user(
            user_id,
            &format!(
                "REMOVE {TOTP_ATTRIBUTES} SET token_version = token_version + :one, updated_at = :t"
            ),
            "totp_enabled = :on AND totp_undo_hash = :undo",
            &[
                (":on", AttributeValue::Bool(true)),
                (":undo", s(undo_hash)),
                (":one", n(1)),
                (":t", rfc3339(updated_at)),
            ],
        )
        .await
        .map(drop)
    }

    async fn disable_totp(&self, user_id: UserId, factor: &SecondFactor) -> Result<(), StoreError> {
        // The factor's condition on the item, and every TOTP attribute removed: spent and gone
        // in one write.
        let (_, condition, pairs) = spend(factor);
        let pairs: Vec<_> = pairs
            .into_iter()
            .filter(|(name, _)| *name != ":spent")
            .collect();
        self.update_user(
            user_id,
            &format!("REMOVE {TOTP_ATTRIBUTES}"),
            condition,
            &pairs,
        )
        .await
        .map(drop)
    }

    async fn create_challenge(&self, challenge: &MfaChallenge) -> Result<(), StoreError> {
        let item = Item::from([
            (
                attr::PK.into(),
                s(keys::mfa_challenge(&challenge.token_hash)),
            ),
            (attr::USER_ID.into(), s(challenge.user_id.to_string())),
            (attr::TOKEN_VERSION.into(), n(challenge.token_version)),
            (attr::EXPIRES_AT.into(), n(challenge.expires_at)),
            (attr::TRIES.into(), n(challenge.tries.into())),
            (attr::TTL.into(), n(challenge.expires_at)),
        ]);
        self.client
            .put_item()
            .table_name(&self.tokens_table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn try_challenge(
        &self,
        token_hash: &str,
        max_tries: u32,
        now: u64,
    ) -> Result<Option<MfaChallenge>, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tokens_table)
            .key(attr::PK, s(keys::mfa_challenge(token_hash)))
            .update_expression("ADD tries :one")
            .condition_expression("attribute_exists(pk) AND expires_at > :now AND tries < :max")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":max", n(max_tries.into()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let item = match update_outcome(result) {
            Ok(item) => item,
            Err(StoreError::Conflict) => return Ok(None),
            Err(err) => return Err(err),
        };
        let user_id = str_attr(&item, attr::USER_ID)
            .and_then(UserId::parse)
            .ok_or_else(|| super::corrupt("a challenge has a bad user"))?;
        Ok(Some(MfaChallenge {
            token_hash: token_hash.to_owned(),
            user_id,
            token_version: num_attr(&item, attr::TOKEN_VERSION).unwrap_or(0),
            expires_at: num_attr(&item, attr::EXPIRES_AT).unwrap_or(0),
            tries: num_attr(&item, attr::TRIES).map_or(u32::MAX, saturating_u32),
        }))
    }

    async fn complete_challenge(
        &self,
        challenge: &MfaChallenge,
        factor: &SecondFactor,
        session: &SessionRecord,
    ) -> Result<(), StoreError> {
        let end = Delete::builder()
            .table_name(&self.tokens_table)
            .key(attr::PK, s(keys::mfa_challenge(&challenge.token_hash)))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(unavailable)?;
        let (update, condition, pairs) = spend(factor);
        let spend = Update::builder()
            .table_name(&self.users_table)
            .key(attr::PK, s(keys::user(challenge.user_id)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_values(Some(values(pairs)))
            .build()
            .map_err(unavailable)?;
        let items = vec![
            TransactWriteItem::builder().delete(end).build(),
            TransactWriteItem::builder().update(spend).build(),
            self.put_session(session)?,
        ];
        self.transact_or_conflict(items, "second factor").await
    }
}
