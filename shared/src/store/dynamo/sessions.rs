//! Sessions: refresh-token rotation (one conditional transaction per spend), spent-token
//! lookups, and revocation of one session or all of a user's.

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    ConditionCheck, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};

use super::item::{CONDITION_FAILED, attr, n, parse_spent, s, spent_item};
use super::{DynamoStore, codes, corrupt, unavailable};
use crate::domain::UserId;
use crate::store::{Rotation, RotationOutcome, Sessions, StoreError, keys};

impl Sessions for DynamoStore {
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
            .key(attr::PK, s(keys::session(&rotation.sid)))
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
        const FAILED: Option<&str> = Some(CONDITION_FAILED);
        match codes(&reasons).as_slice() {
            [FAILED, session] => {
                let winner = match reasons.first().and_then(|r| r.item.clone()) {
                    Some(item) => item,
                    None => self
                        .get_in(&self.tokens_table, keys::spent_token(&rotation.spent_jti))
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
            .get_in(&self.tokens_table, keys::spent_token(jti))
            .await?
            .is_some())
    }

    async fn is_live(&self, jti: &str, sid: &str) -> Result<bool, StoreError> {
        let (spent, revoked) = tokio::try_join!(
            self.get_in(&self.tokens_table, keys::spent_token(jti)),
            self.get_in(&self.tokens_table, keys::session(sid)),
        )?;
        Ok(spent.is_none() && revoked.is_none())
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
            .item(attr::PK, s(keys::session(sid)))
            .item(attr::USER_ID, s(user_id.to_string()))
            .item(attr::REASON, s(reason))
            .item(attr::REVOKED_AT, n(revoked_at))
            .item(attr::TTL, n(expires_at))
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
        let raised = self
            .update_user(
                user_id,
                "SET token_version = token_version + :one",
                "token_version = :seen",
                &[(":one", n(1)), (":seen", n(seen_version))],
            )
            .await;
        match raised {
            // Already raised since, or the user is gone: either way nothing older survives.
            Ok(_) | Err(StoreError::Conflict) => Ok(()),
            Err(err) => Err(err),
        }
    }
}
