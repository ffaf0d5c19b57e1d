//! Reset codes, kept on the user item: stored as a keyed hash, spent by the conditional write
//! that sets the new password. Tries are counted per code and client, as throttling counters.

use time::OffsetDateTime;

use super::DynamoStore;
use super::item::{n, s};
use crate::domain::{StoredResetCode, UserId};
use crate::store::{Codes, StoreError};

impl Codes for DynamoStore {
    async fn store_reset_code(
        &self,
        user_id: UserId,
        code: &StoredResetCode,
    ) -> Result<(), StoreError> {
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
}
