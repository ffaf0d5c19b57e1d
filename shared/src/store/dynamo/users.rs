//! Users and their uniqueness records: registration, sign-in lookups, profile and password
//! changes, deletion. Every change that moves an email or username is one transaction.

use aws_sdk_dynamodb::types::{Delete, TransactWriteItem, Update};
use time::OffsetDateTime;

use super::item::{CONDITION_FAILED, Item, attr, n, rfc3339, s, str_attr};
use super::{DynamoStore, PASSWORD_REMOVE, PASSWORD_SET, codes, corrupt, unavailable};
use crate::domain::{Identifier, UserId, UserRecord};
use crate::store::{SessionRecord, StoreError, Users, keys};

impl Users for DynamoStore {
    async fn create_user(
        &self,
        user: &UserRecord,
        session: Option<&SessionRecord>,
    ) -> Result<(), StoreError> {
        let marker = |pk: String| {
            Item::from([
                ("pk".into(), s(pk)),
                ("user_id".into(), s(user.id.to_string())),
            ])
        };
        let mut items = vec![
            self.put_new(Item::from(user))?,
            self.put_new(marker(keys::email(user.email.as_str())))?,
            self.put_new(marker(keys::username(&user.username.key())))?,
        ];
        if let Some(session) = session {
            items.push(self.put_session(session)?);
        }
        // Idempotency (RL-03): the SDK's retries of this write (a lost answer, a timeout) carry
        // the same token, so a retry cannot collide with the write it repeats. A client's new
        // request is another registration (another id, salt and time): finding its account
        // taken, it answers 409, and the client signs in.
        let Err(reasons) = self.transact(items, Some(user.id.to_string())).await? else {
            return Ok(());
        };
        match codes(&reasons).as_slice() {
            [_, Some(CONDITION_FAILED), ..] => Err(StoreError::EmailTaken),
            [_, _, Some(CONDITION_FAILED), ..] => Err(StoreError::UsernameTaken),
            codes => Err(StoreError::Unavailable(
                format!("registration cancelled: {codes:?}").into(),
            )),
        }
    }

    async fn find_user_id(&self, identifier: &Identifier) -> Result<Option<UserId>, StoreError> {
        let Some(item) = self.get(keys::identifier(identifier)).await? else {
            return Ok(None);
        };
        let id = str_attr(&item, attr::USER_ID).and_then(UserId::parse);
        id.map(Some)
            .ok_or_else(|| corrupt("a uniqueness marker has no user_id"))
    }

    async fn get_user(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        match self.get(keys::user(id)).await? {
            None => Ok(None),
            Some(item) => UserRecord::try_from(&item).map(Some),
        }
    }

    async fn update_profile(&self, old: &UserRecord, new: &UserRecord) -> Result<(), StoreError> {
        let id = s(old.id.to_string());
        let mut set = "SET username = :u, email = :e, updated_at = :t".to_owned();
        let mut values = Item::from([
            (":u".into(), s(new.username.as_str())),
            (":e".into(), s(new.email.as_str())),
            (":t".into(), rfc3339(new.updated_at)),
            (":old_u".into(), s(old.username.as_str())),
            (":old_e".into(), s(old.email.as_str())),
        ]);
        let mut remove = Vec::new();
        match &new.full_name {
            Some(name) => {
                set.push_str(", full_name = :f");
                values.insert(":f".into(), s(name.as_str()));
            }
            None => remove.push(attr::FULL_NAME),
        }
        // A reset code went to the old address: it must not reset the account now.
        if old.email != new.email {
            remove.extend([attr::RESET_CODE_HASH, attr::RESET_CODE_EXPIRES_AT]);
        }
        if !remove.is_empty() {
            set.push_str(" REMOVE ");
            set.push_str(&remove.join(", "));
        }
        let user = Update::builder()
            .table_name(&self.users_table)
            .key(attr::PK, s(keys::user(old.id)))
            .update_expression(set)
            .condition_expression("email = :old_e AND username = :old_u")
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(unavailable)?;
        let mut items = vec![TransactWriteItem::builder().update(user).build()];
        // Each moved record: free the old one (still ours), take the new one (still free).
        let mut takes = Vec::new();
        for (old_key, new_key, taken) in [
            (
                keys::email(old.email.as_str()),
                keys::email(new.email.as_str()),
                StoreError::EmailTaken,
            ),
            (
                keys::username(&old.username.key()),
                keys::username(&new.username.key()),
                StoreError::UsernameTaken,
            ),
        ] {
            if old_key == new_key {
                continue;
            }
            let free = Delete::builder()
                .table_name(&self.users_table)
                .key(attr::PK, s(old_key))
                .condition_expression("user_id = :id")
                .expression_attribute_values(":id", id.clone())
                .build()
                .map_err(unavailable)?;
            items.push(TransactWriteItem::builder().delete(free).build());
            let marker = Item::from([("pk".into(), s(new_key)), ("user_id".into(), id.clone())]);
            items.push(self.put_new(marker)?);
            takes.push((items.len() - 1, taken));
        }
        let Err(reasons) = self.transact(items, None).await? else {
            return Ok(());
        };
        let codes = codes(&reasons);
        for (index, taken) in takes {
            if codes.get(index) == Some(&Some(CONDITION_FAILED)) {
                return Err(taken);
            }
        }
        if codes.contains(&Some(CONDITION_FAILED)) {
            return Err(StoreError::Conflict);
        }
        Err(StoreError::Unavailable(
            format!("profile update cancelled: {codes:?}").into(),
        ))
    }

    async fn set_password(
        &self,
        user_id: UserId,
        seen_version: u64,
        password_hash: &str,
        updated_at: OffsetDateTime,
        session: &SessionRecord,
    ) -> Result<(), StoreError> {
        let user = Update::builder()
            .table_name(&self.users_table)
            .key(attr::PK, s(keys::user(user_id)))
            .update_expression(format!("SET {PASSWORD_SET} REMOVE {PASSWORD_REMOVE}"))
            .condition_expression("token_version = :seen")
            .expression_attribute_values(":h", s(password_hash))
            .expression_attribute_values(":t", rfc3339(updated_at))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":seen", n(seen_version))
            .build()
            .map_err(unavailable)?;
        let items = vec![
            TransactWriteItem::builder().update(user).build(),
            self.put_session(session)?,
        ];
        match self.transact(items, None).await? {
            Ok(()) => Ok(()),
            Err(reasons) if codes(&reasons).first() == Some(&Some(CONDITION_FAILED)) => {
                Err(StoreError::Conflict)
            }
            Err(reasons) => Err(StoreError::Unavailable(
                format!("password change cancelled: {:?}", codes(&reasons)).into(),
            )),
        }
    }

    async fn upgrade_password_hash(
        &self,
        user_id: UserId,
        old_hash: &str,
        new_hash: &str,
    ) -> Result<(), StoreError> {
        self.update_user(
            user_id,
            "SET password_hash = :new",
            "password_hash = :old",
            &[(":new", s(new_hash)), (":old", s(old_hash))],
        )
        .await
        .map(drop)
    }

    async fn delete_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let id = s(user.id.to_string());
        let mut items = Vec::new();
        for (key, condition) in [
            (keys::user(user.id), "attribute_exists(pk)"),
            (keys::email(user.email.as_str()), "user_id = :id"),
            (keys::username(&user.username.key()), "user_id = :id"),
        ] {
            let mut delete = Delete::builder()
                .table_name(&self.users_table)
                .key(attr::PK, s(key))
                .condition_expression(condition);
            if condition.contains(":id") {
                delete = delete.expression_attribute_values(":id", id.clone());
            }
            items.push(
                TransactWriteItem::builder()
                    .delete(delete.build().map_err(unavailable)?)
                    .build(),
            );
        }
        self.transact_or_conflict(items, "deletion").await
    }
}
