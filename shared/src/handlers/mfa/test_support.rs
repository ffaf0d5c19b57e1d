//! What the two-step endpoints' tests share: calling a handler, the user's authenticator,
//! Alice with TOTP turned on, the first step of a sign-in.

pub(crate) use std::sync::Arc;

pub(crate) use serde_json::{Value, json};
pub(crate) use time::Duration;

pub(crate) use crate::handlers::Deps;
pub(crate) use crate::handlers::{
    login, me, mfa_totp_confirm, mfa_totp_disable, mfa_totp_setup, mfa_verify, refresh,
    reset_password,
};
pub(crate) use crate::http::Response;
pub(crate) use crate::store::{Codes, Users};
pub(crate) use crate::testing::{
    ManualClock, MemoryStore, PASSWORD, alice, authed, body_json, clocked, deps, event, from_ip,
    post, retry_after, token_claims, user_id, verify_address,
};
pub(crate) use crate::totp;

pub(crate) type TestDeps = Deps<MemoryStore>;

pub(crate) async fn call(
    handler: impl AsyncFnOnce(
        &TestDeps,
        lambda_http::Request,
    ) -> Result<Response, std::convert::Infallible>,
    deps: &TestDeps,
    req: lambda_http::Request,
) -> (u16, Value) {
    let response = handler(deps, req).await.expect("infallible");
    let status = response.status().as_u16();
    let body = if response.body().is_empty() {
        Value::Null
    } else {
        body_json(&response)
    };
    (status, body)
}

/// `POST /auth/mfa/totp/setup` with `body`, as the signed-in user of `tokens`.
pub(crate) async fn setup(deps: &TestDeps, tokens: &Value, body: &Value) -> (u16, Value) {
    let req = authed("POST", "/auth/mfa/totp/setup", tokens, Some(body));
    call(mfa_totp_setup::handle, deps, req).await
}

/// `POST /auth/mfa/totp/confirm` with `body`, as the signed-in user of `tokens`.
pub(crate) async fn confirm(deps: &TestDeps, tokens: &Value, body: &Value) -> (u16, Value) {
    let req = authed("POST", "/auth/mfa/totp/confirm", tokens, Some(body));
    call(mfa_totp_confirm::handle, deps, req).await
}

/// The code of the user's authenticator at `offset` steps from now.
pub(crate) async fn code(deps: &TestDeps, tokens: &Value, offset: i64) -> String {
    let user = deps
        .store
        .get_user(user_id(tokens))
        .await
        .ok()
        .flatten()
        .expect("the user");
    let sealed = user.totp.expect("a TOTP secret").sealed_secret;
    let secret = deps
        .mfa
        .as_ref()
        .and_then(|keys| keys.open(user.id, &sealed))
        .expect("it opens");
    let step = totp::step_at(deps.now()).saturating_add_signed(offset);
    totp::code_at(&secret, step)
}

/// A code no step within the drift window has for this user: certainly wrong.
pub(crate) async fn wrong_code(deps: &TestDeps, tokens: &Value) -> String {
    let window = [
        code(deps, tokens, -1).await,
        code(deps, tokens, 0).await,
        code(deps, tokens, 1).await,
    ];
    ["000000", "111111", "222222", "333333"]
        .into_iter()
        .find(|c| !window.iter().any(|w| w == c))
        .unwrap_or_default()
        .to_owned()
}

/// Alice with TOTP enabled: her token response and her recovery codes.
pub(crate) async fn alice_with_totp(deps: &TestDeps) -> (Value, Vec<String>) {
    let tokens = alice(deps).await;
    verify_address(deps, &tokens).await;
    let password = json!({"current_password": PASSWORD});
    let (status, body) = setup(deps, &tokens, &password).await;
    assert_eq!(status, 200, "{body}");
    let secret = body["secret"].as_str().expect("a secret");
    assert_eq!(secret.len(), 32);
    assert!(body["otpauth_uri"].as_str().is_some_and(|uri| {
        uri.starts_with("otpauth://totp/Auth:alice?secret=") && uri.contains(secret)
    }));
    let first_code = json!({"code": code(deps, &tokens, 0).await});
    let (status, body) = confirm(deps, &tokens, &first_code).await;
    assert_eq!(status, 200, "{body}");
    let codes: Vec<String> =
        serde_json::from_value(body["recovery_codes"].clone()).expect("recovery codes");
    (tokens, codes)
}

/// Signs in with the password: the `mfa_token` of the answer.
pub(crate) async fn first_step(deps: &TestDeps) -> String {
    let body = json!({"identifier": "alice", "password": PASSWORD});
    let (status, body) = call(login::handle, deps, post("/auth/login", &body)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["mfa_required"], true);
    assert_eq!(body["methods"], json!(["totp", "recovery_code"]));
    assert!(body.get("access_token").is_none() && body.get("refresh_token").is_none());
    body["mfa_token"].as_str().expect("an mfa_token").to_owned()
}

pub(crate) async fn verify(deps: &TestDeps, mfa_token: &str, code: &str) -> (u16, Value) {
    let body = json!({"mfa_token": mfa_token, "code": code});
    call(mfa_verify::handle, deps, post("/auth/mfa/verify", &body)).await
}
