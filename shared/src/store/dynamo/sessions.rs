//! Sessions: their records (sessions table, one partition per user, listed by a Query),
//! spending refresh tokens (one conditional transaction per refresh, which also keeps the record's
//! last use), spent-token lookups, and revocation of one session or all of a user's.

use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};

use super::item::{CONDITION_FAILED, Item, attr, n, parse_spent, s, session_key, spent_item};
use super::{DynamoStore, codes, corrupt, unavailable};
use crate::domain::UserId;
use crate::store::{SessionRecord, Sessions, Spend, SpendOutcome, StoreError, keys};

impl Sessions for DynamoStore {
    async fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.sessions_table)
            .set_item(Some(Item::from(session)))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn list_sessions(&self, user_id: UserId) -> Result<Vec<SessionRecord>, StoreError> {
        let items: Vec<Item> = self
            .client
            .query()
            .table_name(&self.sessions_table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(keys::user(user_id)))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(unavailable)?;
        items.iter().map(SessionRecord::try_from).collect()
    }

    async fn get_session(
        &self,
        user_id: UserId,
        sid: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.sessions_table)
            .set_key(Some(session_key(user_id, sid)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        output
            .item
            .as_ref()
            .map(SessionRecord::try_from)
            .transpose()
    }

    async fn delete_sessions(&self, user_id: UserId) -> Result<(), StoreError> {
        // One at a time: an account is deleted once, and has few sessions left by then.
        for session in self.list_sessions(user_id).await? {
            self.client
                .delete_item()
                .table_name(&self.sessions_table)
                .set_key(Some(session_key(user_id, &session.sid)))
                .send()
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn spend_refresh_token(
        &self,
        spend: &Spend,
        session: &SessionRecord,
    ) -> Result<SpendOutcome, StoreError> {
        let spent = Put::builder()
            .table_name(&self.tokens_table)
            .set_item(Some(spent_item(spend)))
            .condition_expression("attribute_not_exists(pk)")
            // A lost race hands back the winner's record: no second read to find the successor.
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(unavailable)?;
        let live_session = ConditionCheck::builder()
            .table_name(&self.tokens_table)
            .key(attr::PK, s(keys::session(&spend.sid)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(unavailable)?;
        let items = vec![
            TransactWriteItem::builder().put(spent).build(),
            TransactWriteItem::builder()
                .condition_check(live_session)
                .build(),
            TransactWriteItem::builder()
                .update(self.touch_session(session)?)
                .build(),
        ];
        let Err(reasons) = self.transact(items, None).await? else {
            return Ok(SpendOutcome::Spent);
        };
        const FAILED: Option<&str> = Some(CONDITION_FAILED);
        match codes(&reasons).as_slice() {
            [FAILED, session, _] => {
                let winner = match reasons.first().and_then(|r| r.item.clone()) {
                    Some(item) => item,
                    None => self
                        .get_in(&self.tokens_table, keys::spent_token(&spend.spent_jti))
                        .await?
                        .ok_or_else(|| corrupt("a spent token's record vanished"))?,
                };
                Ok(SpendOutcome::AlreadySpent {
                    winner: parse_spent(&winner, spend)?,
                    session_revoked: *session == FAILED,
                })
            }
            [_, FAILED, _] => Ok(SpendOutcome::SessionRevoked),
            codes => Err(StoreError::Unavailable(
                format!("refresh spend cancelled: {codes:?}").into(),
            )),
        }
    }

    async fn is_spent(&self, jti: &str) -> Result<bool, StoreError> {
        Ok(self
            .get_in(&self.tokens_table, keys::spent_token(jti))
            .await?
            .is_some())
    }

    async fn is_revoked(&self, sid: &str) -> Result<bool, StoreError> {
        let revocation = self.get_in(&self.tokens_table, keys::session(sid)).await?;
        Ok(revocation.is_some())
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
        let revocation = Put::builder()
            .table_name(&self.tokens_table)
            .item(attr::PK, s(keys::session(sid)))
            .item(attr::USER_ID, s(user_id.to_string()))
            .item(attr::REASON, s(reason))
            .item(attr::REVOKED_AT, n(revoked_at))
            .item(attr::TTL, n(expires_at))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(unavailable)?;
        let record = Delete::builder()
            .table_name(&self.sessions_table)
            .set_key(Some(session_key(user_id, sid)))
            .build()
            .map_err(unavailable)?;
        let items = vec![
            TransactWriteItem::builder().put(revocation).build(),
            TransactWriteItem::builder().delete(record).build(),
        ];
        match self.transact(items, None).await? {
            // Revoked before: that revocation deleted the record.
            Ok(()) => Ok(()),
            Err(reasons) if codes(&reasons).first() == Some(&Some(CONDITION_FAILED)) => Ok(()),
            Err(reasons) => Err(StoreError::Unavailable(
                format!("revocation cancelled: {:?}", codes(&reasons)).into(),
            )),
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

impl DynamoStore {
    /// The spend's update of the session record: its last use. The other attributes are
    /// written only where missing: a session begun before records existed gets one at its
    /// first refresh. (A revoked session is never touched: its revocation cancels the whole
    /// spend.)
    fn touch_session(&self, session: &SessionRecord) -> Result<Update, StoreError> {
        let mut set = vec![
            "last_used_at = :used".to_owned(),
            "created_at = if_not_exists(created_at, :created)".to_owned(),
            "expires_at = if_not_exists(expires_at, :exp)".to_owned(),
            "token_version = if_not_exists(token_version, :ver)".to_owned(),
            "#ttl = if_not_exists(#ttl, :ttl)".to_owned(),
        ];
        let mut values = Item::from([
            (":used".into(), n(session.last_used_at)),
            (":created".into(), n(session.created_at)),
            (":exp".into(), n(session.expires_at)),
            (":ver".into(), n(session.token_version)),
            (":ttl".into(), n(session.ttl())),
        ]);
        for (name, value) in [
            (attr::USER_AGENT, &session.user_agent),
            (attr::CLIENT, &session.client),
        ] {
            if let Some(value) = value {
                set.push(format!("{name} = if_not_exists({name}, :{name})"));
                values.insert(format!(":{name}"), AttributeValue::S(value.clone()));
            }
        }
        Update::builder()
            .table_name(&self.sessions_table)
            .set_key(Some(session_key(session.user_id, &session.sid)))
            .update_expression(format!("SET {}", set.join(", ")))
            .expression_attribute_names("#ttl", attr::TTL)
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(unavailable)
    }
}
