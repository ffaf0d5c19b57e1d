//! Integration tests of two-step sign-in against a real DynamoDB API: what is stored (MF-02),
//! and the conditional writes that make each code count once when requests race (MF-01,
//! MF-03). Needs the environment `make test` sets.

use std::sync::Arc;

use crate::common::*;
use serde_json::{Value, json};
use shared::domain::UserId;
use shared::handlers::{
    Deps, login, mfa_totp_confirm, mfa_totp_disable, mfa_totp_setup, mfa_totp_undo, mfa_verify,
};
use shared::store::{DynamoStore, Users};
use shared::testing::{authed, body_json, post};
use shared::totp;

type Shared = Arc<Deps<DynamoStore>>;

fn user_of(tokens: &Value) -> UserId {
    UserId::parse(tokens["user"]["id"].as_str().unwrap_or_default()).expect("a user id")
}

/// The code of the user's authenticator `offset` steps from now (the secret read back from
/// the store and opened, as the functions do).
pub async fn code(deps: &Deps<DynamoStore>, tokens: &Value, offset: u64) -> String {
    let user = deps.store.get_user(user_of(tokens)).await.ok().flatten();
    let user = user.expect("the user");
    let sealed = user.totp.expect("a TOTP secret").sealed_secret;
    let secret = deps
        .mfa
        .as_ref()
        .and_then(|keys| keys.open(user.id, &sealed));
    let now = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
    totp::code_at(&secret.expect("it opens"), totp::step_at(now) + offset)
}

/// A fresh user with TOTP enabled: its name, token response, setup answer and recovery codes.
pub async fn user_with_totp(deps: &Deps<DynamoStore>) -> (String, Value, Value, Vec<String>) {
    let (name, tokens) = sign_up(deps).await;
    shared::testing::verify_address(deps, &tokens).await;
    let setup = json!({"current_password": PASSWORD});
    let req = authed("POST", "/auth/mfa/totp/setup", &tokens, Some(&setup));
    let response = mfa_totp_setup::handle(deps, req).await.expect("infallible");
    assert_eq!(response.status(), 200);
    let setup = body_json(&response);
    let confirm = json!({"code": code(deps, &tokens, 0).await});
    let req = authed("POST", "/auth/mfa/totp/confirm", &tokens, Some(&confirm));
    let response = mfa_totp_confirm::handle(deps, req)
        .await
        .expect("infallible");
    assert_eq!(response.status(), 200);
    let codes = serde_json::from_value(body_json(&response)["recovery_codes"].clone());
    (name, tokens, setup, codes.expect("recovery codes"))
}

pub async fn first_step(deps: &Deps<DynamoStore>, name: &str) -> String {
    let body = json!({"identifier": name, "password": PASSWORD});
    let response = login::handle(deps, post("/auth/login", &body))
        .await
        .expect("infallible");
    let body = body_json(&response);
    assert_eq!(body["mfa_required"], true, "{body}");
    body["mfa_token"].as_str().expect("an mfa_token").to_owned()
}

/// The requests, all in flight at once: their statuses, sorted.
async fn at_once<F>(requests: impl IntoIterator<Item = F>) -> Vec<u16>
where
    F: std::future::Future<Output = u16> + Send + 'static,
{
    let tasks: Vec<_> = requests.into_iter().map(tokio::spawn).collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.expect("task"));
    }
    statuses.sort_unstable();
    statuses
}

/// One verification per `(mfa_token, code)`, all in flight at once: their statuses.
async fn verify_concurrently(deps: &Shared, attempts: Vec<(String, String)>) -> Vec<u16> {
    at_once(attempts.into_iter().map(|(mfa_token, code)| {
        let deps = Arc::clone(deps);
        async move {
            let body = json!({"mfa_token": mfa_token, "code": code});
            let response = mfa_verify::handle(&deps, post("/auth/mfa/verify", &body)).await;
            response.expect("infallible").status().as_u16()
        }
    }))
    .await
}

/// Dependencies whose account lock stays out of the way, so that every racing request reaches
/// the write that decides it (the lock itself is tested on its own).
async fn unlocked_deps() -> Shared {
    let config = config_with(&[("LOGIN_LOCKOUT_THRESHOLD", "50")]);
    counted_deps_with(config, None).await.0
}

async fn user_item(id: UserId) -> Item {
    let pk = format!("USER#{id}");
    let items = scan_users().await;
    items
        .into_iter()
        .find(|item| attr(item, "pk") == pk)
        .expect("the user's item")
}

async fn session_count(id: UserId) -> usize {
    let pk = format!("USER#{id}");
    let table = std::env::var("SESSIONS_TABLE").unwrap_or_default();
    scan(&table)
        .await
        .iter()
        .filter(|item| attr(item, "pk") == pk)
        .count()
}

#[tokio::test]
async fn the_secret_is_sealed_and_recovery_codes_hashed_at_rest() {
    // MF-02: nothing stored opens an account without the MFA key.
    let deps = deps().await;
    let (name, tokens, setup, recovery) = user_with_totp(&deps).await;
    let item = user_item(user_of(&tokens)).await;
    let secret = setup["secret"].as_str().expect("a secret");
    let stored = attr(&item, "totp_secret");
    assert!(
        stored.starts_with("v1.") && !stored.contains(secret),
        "{stored}"
    );
    let hashes = item
        .get("recovery_codes")
        .and_then(|v| v.as_ss().ok())
        .expect("a string set");
    assert_eq!(hashes.len(), 10);
    for code in &recovery {
        let canonical = code.replace('-', "");
        assert!(!hashes.iter().any(|h| h.contains(&canonical)));
    }
    assert!(
        item.get("totp_enabled")
            .is_some_and(|v| v.as_bool() == Ok(&true))
    );

    // The challenge is stored under a hash of the mfa_token, never the token.
    let mfa_token = first_step(&deps, &name).await;
    let challenges: Vec<Item> = scan_tokens()
        .await
        .into_iter()
        .filter(|item| attr(item, "pk").starts_with("MFA#"))
        .collect();
    assert!(!challenges.is_empty());
    assert!(
        challenges
            .iter()
            .all(|item| !attr(item, "pk").contains(&mfa_token) && number(item, "ttl") > 0)
    );
}

#[tokio::test]
async fn racing_verifications_with_one_code_one_wins() {
    // MF-01: four sign-ins wait for their second step; the same code sent with each at once.
    let deps = unlocked_deps().await;
    let (name, tokens, _, _) = user_with_totp(&deps).await;
    let id = user_of(&tokens);
    let sessions_before = session_count(id).await;
    let mut challenges = Vec::new();
    for _ in 0..4 {
        challenges.push(first_step(&deps, &name).await);
    }
    let fresh = code(&deps, &tokens, 1).await;
    let statuses = verify_concurrently(
        &deps,
        challenges
            .iter()
            .map(|t| (t.clone(), fresh.clone()))
            .collect(),
    )
    .await;
    assert_eq!(statuses, [200, 400, 400, 400]);
    assert_eq!(session_count(id).await, sessions_before + 1, "one session");
    let item = user_item(id).await;
    let now = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
    assert!(number(&item, "totp_last_step") >= totp::step_at(now));
}

#[tokio::test]
async fn racing_verifications_with_one_recovery_code_one_wins() {
    // MF-02: spent by a conditional write.
    let deps = unlocked_deps().await;
    let (name, tokens, _, recovery) = user_with_totp(&deps).await;
    let mut attempts = Vec::new();
    for _ in 0..4 {
        attempts.push((first_step(&deps, &name).await, recovery[0].clone()));
    }
    assert_eq!(
        verify_concurrently(&deps, attempts).await,
        [200, 400, 400, 400]
    );
    let item = user_item(user_of(&tokens)).await;
    let left = item.get("recovery_codes").and_then(|v| v.as_ss().ok());
    assert_eq!(left.map(Vec::len), Some(9));
}

#[tokio::test]
async fn one_challenge_checks_at_most_five_codes_however_many_race() {
    // MF-03: each try is counted before its check.
    let deps = deps().await;
    let (name, _, _, _) = user_with_totp(&deps).await;
    let mfa_token = first_step(&deps, &name).await;
    let wrong = (0..8)
        .map(|i| (mfa_token.clone(), format!("99999{i}")))
        .collect();
    let statuses = verify_concurrently(&deps, wrong).await;
    let count = |status| statuses.iter().filter(|s| **s == status).count();
    assert_eq!(count(401), 3, "{statuses:?}");
    assert_eq!(count(400) + count(429), 5, "{statuses:?}");
    let hash = shared::crypto::hex(&<sha2::Sha256 as sha2::Digest>::digest(
        mfa_token.as_bytes(),
    ));
    let challenge = scan_tokens()
        .await
        .into_iter()
        .find(|item| attr(item, "pk") == format!("MFA#{hash}"))
        .expect("the challenge");
    assert_eq!(number(&challenge, "tries"), 5);
}

#[tokio::test]
async fn racing_disables_with_one_code_one_wins_and_totp_is_gone() {
    let deps = deps().await;
    let (name, tokens, _, recovery) = user_with_totp(&deps).await;
    let statuses = at_once((0..2).map(|_| {
        let (deps, tokens, code) = (Arc::clone(&deps), tokens.clone(), recovery[5].clone());
        async move {
            let body = json!({"current_password": PASSWORD, "code": code});
            let req = authed("DELETE", "/auth/mfa/totp", &tokens, Some(&body));
            let response = mfa_totp_disable::handle(&deps, req).await;
            response.expect("infallible").status().as_u16()
        }
    }))
    .await;
    assert_eq!(statuses, [204, 400]);
    let item = user_item(user_of(&tokens)).await;
    for name in [
        "totp_secret",
        "totp_enabled",
        "totp_last_step",
        "recovery_codes",
    ] {
        assert!(!item.contains_key(name), "{name} removed");
    }
    let body = json!({"identifier": name, "password": PASSWORD});
    let response = login::handle(&deps, post("/auth/login", &body)).await;
    let body = body_json(&response.expect("infallible"));
    assert!(body["access_token"].is_string(), "the password alone again");
}

#[tokio::test]
async fn racing_undos_with_one_code_one_wins() {
    // MF-07: the mailed code that turns TOTP off is spent by one conditional write.
    let (deps, _) = counted_deps_with(mail_config(&[]), None).await;
    let (name, tokens, _, _) = user_with_totp(&deps).await;
    let email = format!("{name}@example.com");
    let code = undo_code(&email).expect("the notice mailed an undo code");
    let statuses = at_once((0..4).map(|_| {
        let (deps, email, code) = (Arc::clone(&deps), email.clone(), code.clone());
        async move {
            let body = json!({"email": email, "code": code});
            let response = mfa_totp_undo::handle(&deps, post("/auth/mfa/totp/undo", &body)).await;
            response.expect("infallible").status().as_u16()
        }
    }))
    .await;
    assert_eq!(statuses, [204, 400, 400, 400]);
    let item = user_item(user_of(&tokens)).await;
    assert!(!item.contains_key("totp_enabled") && !item.contains_key("totp_undo_hash"));
    assert_eq!(
        number(&item, "token_version"),
        1,
        "raised once: every session ended"
    );
}
