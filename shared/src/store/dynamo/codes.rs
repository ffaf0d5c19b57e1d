//! Reset codes, kept on the user item: stored as a keyed hash, tried a bounded number of times
//! with an atomic count, spent by the conditional write that sets the new password.

use time::OffsetDateTime;

use super::DynamoStore;
use super::item::{n, s};
use crate::domain::{StoredResetCode, UserId, UserRecord};
use crate::store::{Codes, StoreError};

impl Codes for DynamoStore {
    async fn store_reset_code(
        &self,
        user_id: UserId,
        code: &StoredResetCode,
    ) -> Result<(), StoreError> {
        self.update_user(
            user_id,
            "SET reset_code_hash = :h, reset_code_expires_at = :x, reset_code_attempts = :zero",
            "attribute_exists(pk)",
            &[
                (":h", s(&code.hash)),
                (":x", n(code.expires_at)),
                (":zero", n(0)),
            ],
        )
        .await
        .map(drop)
    }

    async fn attempt_reset_code(
        &self,
        user_id: UserId,
        max_attempts: u32,
    ) -> Result<Option<UserRecord>, StoreError> {
        let counted = self
            .update_user(
                user_id,
                "SET reset_code_attempts = reset_code_attempts + :one",
                "attribute_exists(reset_code_hash) AND reset_code_attempts < :max",
                &[(":one", n(1)), (":max", n(max_attempts.into()))],
            )
            .await;
        match counted {
            Ok(item) => UserRecord::try_from(&item).map(Some),
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
}
