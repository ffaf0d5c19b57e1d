//! Mailed codes, kept on the user item: stored as a keyed hash, spent by the conditional write
//! that sets the new password or marks the address verified. Tries are counted per code and
//! client, as throttling counters.

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use time::OffsetDateTime;

use super::item::{CONDITION_FAILED, Item, attr, n, rfc3339, s, str_attr};
use super::{DynamoStore, codes, corrupt, unavailable};
use crate::domain::{Email, StoredCode, UserId, UserRecord};
use crate::store::{Codes, StoreError, keys};

impl Codes for DynamoStore {
    async fn store_reset_code(&self, user_id: UserId, code: &StoredCode) -> Result<(), StoreError> {
        self.update_user(
            user_id,
            "SET reset_code_hash = :h, reset_code_expires_at = :x",
            "attribute_exists(pk)",
            &[(":h", s(&code.hash)), (":x", n(code.expires_at))],
        )
        .await
        .map(drop)
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

    async fn store_verify_code(
        &self,
        user_id: UserId,
        code: &StoredCode,
    ) -> Result<(), StoreError> {
        self.update_user(
            user_id,
            "SET verify_code_hash = :h, verify_code_expires_at = :x",
            "attribute_exists(pk) AND NOT email_verified = :yes",
            &[
                (":h", s(&code.hash)),
                (":x", n(code.expires_at)),
                (":yes", AttributeValue::Bool(true)),
            ],
        )
        .await
        .map(drop)
    }

    async fn verify_email(
        &self,
        user_id: UserId,
        code_hash: &str,
        updated_at: OffsetDateTime,
    ) -> Result<UserRecord, StoreError> {
        let item = self
            .update_user(
                user_id,
                "SET email_verified = :yes, updated_at = :t \
                 REMOVE verify_code_hash, verify_code_expires_at",
                "verify_code_hash = :code",
                &[
                    (":yes", AttributeValue::Bool(true)),
                    (":t", rfc3339(updated_at)),
                    (":code", s(code_hash)),
                ],
            )
            .await?;
        UserRecord::try_from(&item)
    }

    async fn request_email_change(
        &self,
        user_id: UserId,
        new_email: &Email,
        code: &StoredCode,
        pending_key: &str,
    ) -> Result<(), StoreError> {
        let user = Update::builder()
            .table_name(&self.users_table)
            .key(attr::PK, s(keys::user(user_id)))
            .update_expression(
                "SET pending_email = :p, verify_code_hash = :h, verify_code_expires_at = :x",
            )
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":p", s(new_email.as_str()))
            .expression_attribute_values(":h", s(&code.hash))
            .expression_attribute_values(":x", n(code.expires_at))
            .build()
            .map_err(unavailable)?;
        let pending = Put::builder()
            .table_name(&self.tokens_table)
            .set_item(Some(Item::from([
                (attr::PK.into(), s(keys::pending_email(pending_key))),
                (attr::USER_ID.into(), s(user_id.to_string())),
                (attr::TTL.into(), n(code.expires_at)),
            ])))
            .build()
            .map_err(unavailable)?;
        let items = vec![
            TransactWriteItem::builder().update(user).build(),
            TransactWriteItem::builder().put(pending).build(),
        ];
        self.transact_or_conflict(items, "email change").await
    }

    async fn find_pending_owner(&self, pending_key: &str) -> Result<Option<UserId>, StoreError> {
        let key = keys::pending_email(pending_key);
        let Some(item) = self.get_in(&self.tokens_table, key).await? else {
            return Ok(None);
        };
        str_attr(&item, attr::USER_ID)
            .and_then(UserId::parse)
            .map(Some)
            .ok_or_else(|| corrupt("a pending email record has no user_id"))
    }

    async fn confirm_email_change(
        &self,
        user: &UserRecord,
        code_hash: &str,
        pending_key: &str,
        updated_at: OffsetDateTime,
    ) -> Result<UserRecord, StoreError> {
        let Some(new_email) = &user.pending_email else {
            return Err(StoreError::Conflict);
        };
        let id = s(user.id.to_string());
        let switch = Update::builder()
            .table_name(&self.users_table)
            .key(attr::PK, s(keys::user(user.id)))
            .update_expression(
                "SET email = :new, email_verified = :yes, updated_at = :t \
                 REMOVE pending_email, verify_code_hash, verify_code_expires_at, \
                 reset_code_hash, reset_code_expires_at",
            )
            .condition_expression("verify_code_hash = :h AND pending_email = :new AND email = :old")
            .expression_attribute_values(":new", s(new_email.as_str()))
            .expression_attribute_values(":old", s(user.email.as_str()))
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":t", rfc3339(updated_at))
            .expression_attribute_values(":h", s(code_hash))
            .build()
            .map_err(unavailable)?;
        let free = Delete::builder()
            .table_name(&self.users_table)
            .key(attr::PK, s(keys::email(user.email.as_str())))
            .condition_expression("user_id = :id")
            .expression_attribute_values(":id", id.clone())
            .build()
            .map_err(unavailable)?;
        let take = self.put_new(Item::from([
            (attr::PK.into(), s(keys::email(new_email.as_str()))),
            (attr::USER_ID.into(), id),
        ]))?;
        let done = Delete::builder()
            .table_name(&self.tokens_table)
            .key(attr::PK, s(keys::pending_email(pending_key)))
            .build()
            .map_err(unavailable)?;
        let items = vec![
            TransactWriteItem::builder().update(switch).build(),
            TransactWriteItem::builder().delete(free).build(),
            take,
            TransactWriteItem::builder().delete(done).build(),
        ];
        let Err(reasons) = self.transact(items, None).await? else {
            let mut switched = user.clone();
            switched.email = new_email.clone();
            switched.pending_email = None;
            switched.email_verified = true;
            switched.verify_code = None;
            switched.reset_code = None;
            switched.updated_at = updated_at;
            return Ok(switched);
        };
        let codes = codes(&reasons);
        if codes.get(2) == Some(&Some(CONDITION_FAILED)) {
            return Err(StoreError::EmailTaken);
        }
        if codes.contains(&Some(CONDITION_FAILED)) {
            return Err(StoreError::Conflict);
        }
        Err(StoreError::Unavailable(
            format!("email switch cancelled: {codes:?}").into(),
        ))
    }
}
