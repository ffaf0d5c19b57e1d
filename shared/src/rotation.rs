//! The rotation of the signing keys: the four steps Secrets Manager asks of a rotation function
//! (`createSecret`, `setSecret`, `testSecret`, `finishSecret`), over the secret's versions.
//!
//! - `createSecret` stages the rotated [`KeyDocument`] as `AWSPENDING` (the first keys when the
//!   secret holds none yet), or fails when the timing rules refuse a rotation now.
//! - `setSecret` publishes the pending document's public keys. They include the key that signs
//!   now and the one that will, so the published set is right before and after the switch.
//! - `testSecret` signs with the pending key and verifies with its published half.
//! - `finishSecret` moves `AWSCURRENT` to the new version.
//!
//! Every step can run twice (Secrets Manager retries), and does the same thing.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use serde::Deserialize;

use crate::signing::{KeyDocument, RotationRules};
use crate::store::Published;

pub const CURRENT: &str = "AWSCURRENT";
pub const PENDING: &str = "AWSPENDING";

/// The event Secrets Manager invokes a rotation function with.
#[derive(Debug, Clone, Deserialize)]
pub struct RotationEvent {
    #[serde(rename = "SecretId")]
    pub secret_id: String,
    /// The id of the version this rotation creates.
    #[serde(rename = "ClientRequestToken")]
    pub token: String,
    #[serde(rename = "Step")]
    pub step: Step,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Step {
    CreateSecret,
    SetSecret,
    TestSecret,
    FinishSecret,
}

impl Step {
    /// The four steps in the order Secrets Manager invokes them.
    pub const ALL: [Step; 4] = [
        Step::CreateSecret,
        Step::SetSecret,
        Step::TestSecret,
        Step::FinishSecret,
    ];
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("rotation is not enabled on the secret")]
    NotEnabled,
    #[error("version {0} is not a version of this rotation")]
    UnknownVersion(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error("the pending keys are not valid: {0}")]
    Invalid(String),
    #[error("{0}")]
    Unavailable(String),
}

/// What a rotation reads and writes of a secret: its versions and their stages.
pub trait SecretVersions: Send + Sync {
    /// Whether rotation is enabled, and the stages of each version id.
    fn stages(
        &self,
        secret_id: &str,
    ) -> impl Future<Output = Result<(bool, HashMap<String, Vec<String>>), RotationError>> + Send;

    /// The value of the version with this stage, or with this id (`None`: no such version).
    fn value(
        &self,
        secret_id: &str,
        stage: &str,
        version_id: Option<&str>,
    ) -> impl Future<Output = Result<Option<String>, RotationError>> + Send;

    /// Stores a new version `version_id` staged `AWSPENDING`.
    fn put_pending(
        &self,
        secret_id: &str,
        version_id: &str,
        value: &str,
    ) -> impl Future<Output = Result<(), RotationError>> + Send;

    /// Moves `AWSCURRENT` from `from` to `to`, which is then no longer `AWSPENDING`.
    fn make_current(
        &self,
        secret_id: &str,
        to: &str,
        from: Option<&str>,
    ) -> impl Future<Output = Result<(), RotationError>> + Send;
}

/// How the rotation function is configured.
#[derive(Debug, Clone)]
pub struct RotationSettings {
    /// The `iss` of the tokens, written into both documents.
    pub issuer: String,
    pub rules: RotationRules,
}

/// Runs one step of a rotation at `now` (seconds).
pub async fn rotate<V: SecretVersions, P: Published>(
    versions: &V,
    published: &P,
    settings: &RotationSettings,
    event: &RotationEvent,
    now: u64,
) -> Result<(), RotationError> {
    let (enabled, stages) = versions.stages(&event.secret_id).await?;
    if !enabled {
        return Err(RotationError::NotEnabled);
    }
    let token_stages = stages
        .get(&event.token)
        .ok_or_else(|| RotationError::UnknownVersion(event.token.clone()))?;
    if token_stages.iter().any(|stage| stage == CURRENT) {
        // This version already finished: a retried step.
        return Ok(());
    }
    if !token_stages.iter().any(|stage| stage == PENDING) {
        return Err(RotationError::UnknownVersion(event.token.clone()));
    }
    let id = event.secret_id.as_str();
    let pending = || async {
        let value = versions.value(id, PENDING, Some(&event.token)).await?;
        let value = value.ok_or_else(|| RotationError::Invalid("no pending value".into()))?;
        KeyDocument::parse(&value).map_err(|err| RotationError::Invalid(err.to_string()))
    };
    match event.step {
        Step::CreateSecret => {
            if versions
                .value(id, PENDING, Some(&event.token))
                .await?
                .is_some()
            {
                return Ok(());
            }
            let current = versions.value(id, CURRENT, None).await?;
            let document = match current.as_deref() {
                // A key document (a JSON object), rotated. A damaged one fails the step: new
                // keys in its place would drop the ones every verifier trusts (issue 27).
                Some(value) if value.trim_start().starts_with('{') => KeyDocument::parse(value)
                    .map_err(|err| RotationError::Invalid(err.to_string()))?
                    .rotated(&settings.issuer, now, settings.rules)
                    .map_err(|err| RotationError::Invalid(err.to_string()))?
                    .map_err(|refused| RotationError::Refused(refused.to_string()))?,
                // No keys yet (a new, empty secret, or a placeholder that is no key
                // document): the first ones.
                _ => KeyDocument::genesis(&settings.issuer, now)
                    .map_err(|err| RotationError::Invalid(err.to_string()))?,
            };
            versions
                .put_pending(id, &event.token, &document.to_json())
                .await
        }
        Step::SetSecret => {
            let document = pending().await?;
            let public = document
                .public()
                .map_err(|err| RotationError::Invalid(err.to_string()))?;
            published
                .publish_keys(&public)
                .await
                .map_err(|err| RotationError::Unavailable(err.to_string()))
        }
        Step::TestSecret => {
            let document = pending().await?;
            check_round_trip(&document)
        }
        Step::FinishSecret => {
            let current = stages
                .iter()
                .find(|(_, stages)| stages.iter().any(|stage| stage == CURRENT))
                .map(|(version, _)| version.as_str());
            versions.make_current(id, &event.token, current).await
        }
    }
}

/// The pending key signs, and its published half verifies what it signed.
fn check_round_trip(document: &KeyDocument) -> Result<(), RotationError> {
    let invalid = |err: &dyn std::fmt::Display| RotationError::Invalid(err.to_string());
    let signer = document.signer().map_err(|err| invalid(&err))?;
    let public = document.public().map_err(|err| invalid(&err))?;
    let message = b"rotation test";
    let signature = signer.sign(message).map_err(|err| invalid(&err))?;
    let jwk = public
        .keys
        .iter()
        .find(|jwk| jwk.kid == signer.kid())
        .ok_or_else(|| RotationError::Invalid("the signing key is not published".into()))?;
    let key = jsonwebtoken::DecodingKey::from_rsa_components(&jwk.n, &jwk.e)
        .map_err(|err| invalid(&err))?;
    let encoded = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        &signature,
    );
    let verified =
        jsonwebtoken::crypto::verify(&encoded, message, &key, jsonwebtoken::Algorithm::RS256)
            .map_err(|err| invalid(&err))?;
    if verified {
        Ok(())
    } else {
        Err(RotationError::Invalid(
            "the published key does not verify the signing key's signature".into(),
        ))
    }
}

/// The rotation's timing rules: a key is listed for `listed` before it signs, and after the
/// promotion that demotes it, for as long as its tokens may live: a warm signer may go on
/// signing with it until it reads the keys again (`keys_max_age`, see [`crate::key_ring`]),
/// then the access token lifetime, then the verifiers' leeway.
pub fn rules(listed: Duration, access_ttl: Duration, keys_max_age: Duration) -> RotationRules {
    RotationRules {
        listed_before_signing: listed,
        signed_tokens_live: keys_max_age
            + access_ttl
            + Duration::from_secs(crate::clock::LEEWAY_SECS),
    }
}

/// [`SecretVersions`] over the Secrets Manager API.
pub struct SecretsManager(pub aws_sdk_secretsmanager::Client);

fn unavailable(err: impl std::error::Error) -> RotationError {
    RotationError::Unavailable(aws_sdk_secretsmanager::error::DisplayErrorContext(&err).to_string())
}

impl SecretVersions for SecretsManager {
    async fn stages(
        &self,
        secret_id: &str,
    ) -> Result<(bool, HashMap<String, Vec<String>>), RotationError> {
        let output = self
            .0
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(unavailable)?;
        Ok((
            output.rotation_enabled.unwrap_or(false),
            output.version_ids_to_stages.unwrap_or_default(),
        ))
    }

    async fn value(
        &self,
        secret_id: &str,
        stage: &str,
        version_id: Option<&str>,
    ) -> Result<Option<String>, RotationError> {
        let result = self
            .0
            .get_secret_value()
            .secret_id(secret_id)
            .version_stage(stage)
            .set_version_id(version_id.map(str::to_owned))
            .send()
            .await;
        match result {
            Ok(output) => Ok(output.secret_string),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|service| service.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(err) => Err(unavailable(err)),
        }
    }

    async fn put_pending(
        &self,
        secret_id: &str,
        version_id: &str,
        value: &str,
    ) -> Result<(), RotationError> {
        self.0
            .put_secret_value()
            .secret_id(secret_id)
            .client_request_token(version_id)
            .secret_string(value)
            .version_stages(PENDING)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn make_current(
        &self,
        secret_id: &str,
        to: &str,
        from: Option<&str>,
    ) -> Result<(), RotationError> {
        self.0
            .update_secret_version_stage()
            .secret_id(secret_id)
            .version_stage(CURRENT)
            .move_to_version_id(to)
            .set_remove_from_version_id(from.map(str::to_owned))
            .send()
            .await
            .map_err(unavailable)?;
        // The finished version is no longer pending.
        self.0
            .update_secret_version_stage()
            .secret_id(secret_id)
            .version_stage(PENDING)
            .remove_from_version_id(to)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryStore;
    use std::sync::Mutex;

    /// Secret versions in memory, with Secrets Manager's staging rules.
    #[derive(Default)]
    struct FakeSecret {
        versions: Mutex<Vec<(String, Vec<String>, String)>>,
    }

    impl FakeSecret {
        /// The current key document.
        fn document(&self) -> KeyDocument {
            KeyDocument::parse(&self.current().expect("current")).expect("keys")
        }

        fn current(&self) -> Option<String> {
            let versions = self.versions.lock().expect("lock");
            versions
                .iter()
                .find(|(_, stages, _)| stages.iter().any(|s| s == CURRENT))
                .map(|(_, _, value)| value.clone())
        }

        /// What Secrets Manager does when a rotation starts: a version id staged AWSPENDING
        /// is announced, then each step is invoked in order.
        async fn rotate(
            &self,
            published: &MemoryStore,
            settings: &RotationSettings,
            token: &str,
            now: u64,
        ) -> Result<(), RotationError> {
            for step in Step::ALL {
                let event = RotationEvent {
                    secret_id: "keys".into(),
                    token: token.into(),
                    step,
                };
                if step == Step::CreateSecret {
                    self.versions
                        .lock()
                        .expect("lock")
                        .retain(|(_, stages, _)| !stages.is_empty());
                    self.versions.lock().expect("lock").push((
                        token.into(),
                        vec![PENDING.into()],
                        String::new(),
                    ));
                }
                rotate(self, published, settings, &event, now).await?;
            }
            Ok(())
        }
    }

    impl SecretVersions for FakeSecret {
        async fn stages(
            &self,
            _: &str,
        ) -> Result<(bool, HashMap<String, Vec<String>>), RotationError> {
            let versions = self.versions.lock().expect("lock");
            Ok((
                true,
                versions
                    .iter()
                    .map(|(id, stages, _)| (id.clone(), stages.clone()))
                    .collect(),
            ))
        }

        async fn value(
            &self,
            _: &str,
            stage: &str,
            version_id: Option<&str>,
        ) -> Result<Option<String>, RotationError> {
            let versions = self.versions.lock().expect("lock");
            Ok(versions
                .iter()
                .find(|(id, stages, value)| {
                    !value.is_empty()
                        && stages.iter().any(|s| s == stage)
                        && version_id.is_none_or(|wanted| wanted == id)
                })
                .map(|(_, _, value)| value.clone()))
        }

        async fn put_pending(
            &self,
            _: &str,
            version_id: &str,
            value: &str,
        ) -> Result<(), RotationError> {
            let mut versions = self.versions.lock().expect("lock");
            for (id, stages, stored) in versions.iter_mut() {
                if id == version_id {
                    *stored = value.to_owned();
                    stages.retain(|s| s != PENDING);
                    stages.push(PENDING.into());
                }
            }
            Ok(())
        }

        async fn make_current(
            &self,
            _: &str,
            to: &str,
            from: Option<&str>,
        ) -> Result<(), RotationError> {
            let mut versions = self.versions.lock().expect("lock");
            for (id, stages, _) in versions.iter_mut() {
                if Some(id.as_str()) == from {
                    stages.retain(|s| s != CURRENT);
                }
                if id == to {
                    stages.retain(|s| s != PENDING);
                    stages.push(CURRENT.into());
                }
            }
            Ok(())
        }
    }

    fn settings() -> RotationSettings {
        RotationSettings {
            issuer: "https://auth.test".into(),
            rules: rules(
                Duration::from_secs(7200),
                Duration::from_secs(600),
                Duration::from_secs(300),
            ),
        }
    }

    async fn published(store: &MemoryStore) -> crate::signing::PublicKeys {
        store
            .published_keys()
            .await
            .expect("read")
            .expect("published")
    }

    async fn kids(store: &MemoryStore) -> Vec<String> {
        let public = published(store).await;
        public.keys.into_iter().map(|key| key.kid).collect()
    }

    /// A secret and a store after the first rotation, at `now`.
    async fn first_keys(now: u64) -> (FakeSecret, MemoryStore) {
        let secret = FakeSecret::default();
        let store = MemoryStore::new();
        secret
            .rotate(&store, &settings(), "v1", now)
            .await
            .expect("first keys");
        (secret, store)
    }

    #[tokio::test]
    async fn the_first_rotation_makes_the_keys_and_publishes_them() {
        let (secret, store) = first_keys(1_000).await;
        let document = secret.document();
        assert_eq!(document.issuer, "https://auth.test");
        let public = published(&store).await;
        assert_eq!(public, document.public().expect("public"));
        assert_eq!(public.keys.len(), 2);
    }

    #[tokio::test]
    async fn a_rotation_lists_the_new_key_before_it_signs_and_keeps_the_old_one() {
        let (secret, store) = first_keys(0).await;
        let first = secret.document();

        // Too early: the next key has been listed for less than two hours.
        let early = secret.rotate(&store, &settings(), "v2", 7_199).await;
        assert!(matches!(early, Err(RotationError::Refused(_))), "{early:?}");
        let unchanged = secret.document();
        assert_eq!(unchanged, first);

        secret
            .rotate(&store, &settings(), "v3", 7_200)
            .await
            .expect("rotated");
        let second = secret.document();
        assert_eq!(second.signer().expect("signer").kid(), first.next.kid);
        let public = published(&store).await;
        let listed: Vec<_> = public.keys.into_iter().map(|key| key.kid).collect();
        assert_eq!(
            listed,
            [
                first.current.kid.clone(),
                first.next.kid.clone(),
                second.next.kid.clone()
            ]
        );
    }

    #[tokio::test]
    async fn a_damaged_key_document_fails_the_rotation_instead_of_replacing_the_keys() {
        let (secret, store) = first_keys(0).await;
        let kids_before = kids(&store).await;
        let current = secret.current().expect("current");
        let damaged = current[..current.len() / 2].to_owned();
        for (_, stages, value) in secret.versions.lock().expect("lock").iter_mut() {
            if stages.iter().any(|s| s == CURRENT) {
                *value = damaged.clone();
            }
        }
        let refused = secret.rotate(&store, &settings(), "v2", 100_000).await;
        assert!(
            matches!(refused, Err(RotationError::Invalid(_))),
            "{refused:?}"
        );
        assert_eq!(
            secret.current().as_deref(),
            Some(damaged.as_str()),
            "left as it was"
        );
        assert_eq!(kids(&store).await, kids_before, "the published keys too");
    }

    #[tokio::test]
    async fn a_retried_step_does_the_same_thing() {
        let (secret, store) = first_keys(0).await;
        let before = secret.current();
        let kids_before = kids(&store).await;
        // Every step again, for the version that already finished: nothing changes.
        for step in Step::ALL {
            let event = RotationEvent {
                secret_id: "keys".into(),
                token: "v1".into(),
                step,
            };
            rotate(&secret, &store, &settings(), &event, 10)
                .await
                .expect("retried");
        }
        assert_eq!(secret.current(), before);
        assert_eq!(kids(&store).await, kids_before);
    }

    #[test]
    fn the_event_secrets_manager_sends_parses() {
        let event: RotationEvent = serde_json::from_str(
            r#"{"SecretId": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:keys-a1b2c3",
                "ClientRequestToken": "0f4c4f8e-6c1a-4e27-9d5c-3b1e4b2f6a10",
                "Step": "finishSecret"}"#,
        )
        .expect("event");
        assert_eq!(event.step, Step::FinishSecret);
        assert_eq!(event.token, "0f4c4f8e-6c1a-4e27-9d5c-3b1e4b2f6a10");
    }
}
