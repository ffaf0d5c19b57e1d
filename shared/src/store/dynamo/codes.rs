//! Mailed codes, kept on the user item: stored as a keyed hash, spent by the conditional write
//! that sets the new password or marks the address verified. Tries are counted per code and
//! client, as throttling counters.

use aws_sdk_dynamodb::types::AttributeValue;
use time::OffsetDateTime;

use super::DynamoStore;
use super::item::{n, rfc3339, s};
use crate::domain::{StoredCode, UserId, UserRecord};
use crate::store::{Codes, StoreError};

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
            true,
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
}
