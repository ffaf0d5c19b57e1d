//! The published public keys: one item of the users table, its document a JSON string, written
//! by the key rotation and read by the functions that verify access tokens.

use super::item::{Item, attr, s, str_attr};
use super::{DynamoStore, corrupt, unavailable};
use crate::signing::PublicKeys;
use crate::store::{Published, StoreError, keys};

impl Published for DynamoStore {
    async fn published_keys(&self) -> Result<Option<PublicKeys>, StoreError> {
        let Some(item) = self.get(keys::PUBLISHED_KEYS.to_owned()).await? else {
            return Ok(None);
        };
        let document = str_attr(&item, attr::DOCUMENT).ok_or_else(|| corrupt("no key document"))?;
        serde_json::from_str(document)
            .map(Some)
            .map_err(|_| corrupt("the published key document does not parse"))
    }

    async fn publish_keys(&self, keys: &PublicKeys) -> Result<(), StoreError> {
        let document = serde_json::to_string(keys).map_err(unavailable)?;
        self.client
            .put_item()
            .table_name(&self.users_table)
            .set_item(Some(Item::from([
                (attr::PK.into(), s(keys::PUBLISHED_KEYS)),
                (attr::DOCUMENT.into(), s(document)),
            ])))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
