//! Fault injection under the AWS SDK (RL-01, RL-02, SES-02): DynamoDB and SES throttle, fail with
//! a 500, hang, drop the connection or cancel a transaction on a conflict, at every call each
//! endpoint makes. Each endpoint answers a 503 problem with `Retry-After` (forgot-password its
//! usual 202; a failed notification mail changes nothing), leaves the tables as they were, and
//! works when the same request is sent again. A single failed call is absorbed by the SDK's
//! retry. Needs the environment `make test` sets.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use lambda_http::Request;
use serde_json::{Value, json};
use shared::handlers::{
    Deps, change_password, delete_me, forgot_password, list_sessions, login, logout, me,
    mfa_totp_confirm, mfa_totp_disable, mfa_totp_setup, mfa_totp_undo, mfa_verify, refresh,
    register, resend_verification, reset_password, revoke_session, update_me, verify_email,
};
use shared::http::Response;
use shared::store::DynamoStore;
use shared::testing::faults::{Calls, Fault, Faults};
use shared::testing::{body_json, post, request};

const NEW_PASSWORD: &str = "an entirely new passphrase";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Register,
    Login,
    Refresh,
    Logout,
    LogoutAll,
    LogoutOthers,
    ListSessions,
    RevokeSession,
    Me,
    UpdateMe,
    ChangePassword,
    DeleteMe,
    Forgot,
    Reset,
    VerifyEmail,
    ResendVerification,
    /// The first step of a sign-in to an account with TOTP.
    LoginFirstStep,
    TotpSetup,
    TotpConfirm,
    MfaVerify,
    TotpDisable,
    /// Turning TOTP off from the mailbox, with the code its notice mailed.
    TotpUndo,
}

/// One request ready to send (again), and what it may touch.
struct Prepared {
    request: Box<dyn Fn() -> Request + Send + Sync>,
    scope: Scope,
}

/// The items of both tables that belong to one user: its user item, the uniqueness records of
/// its emails and usernames (old and new), its sessions and spent tokens.
#[derive(Default)]
struct Scope {
    user_id: String,
    keys: Vec<String>,
    emails: Vec<String>,
}

impl Endpoint {
    const ALL: [Endpoint; 22] = [
        Endpoint::Register,
        Endpoint::Login,
        Endpoint::Refresh,
        Endpoint::Logout,
        Endpoint::LogoutAll,
        Endpoint::LogoutOthers,
        Endpoint::ListSessions,
        Endpoint::RevokeSession,
        Endpoint::Me,
        Endpoint::UpdateMe,
        Endpoint::ChangePassword,
        Endpoint::DeleteMe,
        Endpoint::Forgot,
        Endpoint::Reset,
        Endpoint::VerifyEmail,
        Endpoint::ResendVerification,
        Endpoint::LoginFirstStep,
        Endpoint::TotpSetup,
        Endpoint::TotpConfirm,
        Endpoint::MfaVerify,
        Endpoint::TotpDisable,
        Endpoint::TotpUndo,
    ];

    fn success(self) -> u16 {
        match self {
            Self::Register => 201,
            Self::Login
            | Self::Refresh
            | Self::Me
            | Self::ListSessions
            | Self::UpdateMe
            | Self::ChangePassword
            | Self::VerifyEmail
            | Self::LoginFirstStep
            | Self::TotpSetup
            | Self::TotpConfirm
            | Self::MfaVerify => 200,
            Self::Logout
            | Self::LogoutAll
            | Self::LogoutOthers
            | Self::RevokeSession
            | Self::DeleteMe
            | Self::Reset
            | Self::TotpDisable
            | Self::TotpUndo => 204,
            Self::Forgot | Self::ResendVerification => 202,
        }
    }

    /// Attributes a failed request may still have changed, on purpose: a sign-in is counted
    /// before the password is compared, and a forgot-password request may have stored a code
    /// whose mail then failed. (Throttling counters live in items of their own, outside the
    /// user's.)
    fn may_change(self) -> &'static [&'static str] {
        match self {
            // A sign-in's check is counted before the password is compared, and so is a code.
            Self::Login | Self::LoginFirstStep | Self::TotpConfirm | Self::TotpDisable => {
                &["failed_logins", "locked_until_ms"]
            }
            // ... and a challenge counts its tries.
            Self::MfaVerify => &["failed_logins", "locked_until_ms", "tries"],
            Self::Forgot => &["reset_code_hash", "reset_code_expires_at"],
            // A code stored for a new address (or, when the name change after it failed, a
            // pending change nobody got a code for, which the retry replaces).
            Self::ResendVerification | Self::UpdateMe => &[
                "pending_email",
                "verify_code_hash",
                "verify_code_expires_at",
            ],
            _ => &[],
        }
    }

    /// Whether the call at `index` is bookkeeping after the request has succeeded, which a
    /// failure leaves undone without changing the answer: what registration does once the
    /// account is written (giving back the unit of the address's conflict budget, mailing the
    /// verification code), verification's giving back of its wrong-code unit, its last
    /// call, and the removal of a deleted account's session records.
    fn best_effort(self, index: usize, calls: &[String]) -> bool {
        match self {
            Self::Register | Self::DeleteMe => {
                calls[..index].iter().any(|c| c == "TransactWriteItems")
            }
            // After the code is spent: the account's failures cleared, the address trusted, the
            // wrong-code unit given back.
            Self::MfaVerify => calls[..index].iter().any(|c| c == "TransactWriteItems"),
            // The same after a confirmation's secret is enabled. (The notice mail after it is
            // best effort as every mail is.)
            Self::TotpConfirm | Self::TotpDisable => {
                calls[index + 1..]
                    .iter()
                    .filter(|c| *c != "SendEmail")
                    .count()
                    < 3
            }
            // The probe budget's unit given back, after everything is written.
            Self::UpdateMe | Self::TotpUndo => calls[index + 1..].iter().all(|c| c == "SendEmail"),
            Self::VerifyEmail => index + 1 == calls.len(),
            _ => false,
        }
    }

    async fn send(self, deps: &Deps<DynamoStore>, req: Request) -> Response {
        let response = match self {
            Self::Register => register::handle(deps, req).await,
            Self::Login => login::handle(deps, req).await,
            Self::Refresh => refresh::handle(deps, req).await,
            Self::Logout | Self::LogoutAll | Self::LogoutOthers => logout::handle(deps, req).await,
            Self::ListSessions => list_sessions::handle(deps, req).await,
            Self::RevokeSession => revoke_session::handle(deps, req).await,
            Self::Me => me::handle(deps, req).await,
            Self::UpdateMe => update_me::handle(deps, req).await,
            Self::ChangePassword => change_password::handle(deps, req).await,
            Self::DeleteMe => delete_me::handle(deps, req).await,
            Self::Forgot => forgot_password::handle(deps, req).await,
            Self::Reset => reset_password::handle(deps, req).await,
            Self::VerifyEmail => verify_email::handle(deps, req).await,
            Self::ResendVerification => resend_verification::handle(deps, req).await,
            Self::LoginFirstStep => login::handle(deps, req).await,
            Self::TotpSetup => mfa_totp_setup::handle(deps, req).await,
            Self::TotpConfirm => mfa_totp_confirm::handle(deps, req).await,
            Self::MfaVerify => mfa_verify::handle(deps, req).await,
            Self::TotpDisable => mfa_totp_disable::handle(deps, req).await,
            Self::TotpUndo => mfa_totp_undo::handle(deps, req).await,
        };
        response.expect("infallible")
    }

    /// A fresh user in the state this endpoint needs, made while no fault is armed.
    async fn prepare(self, deps: &Deps<DynamoStore>) -> Prepared {
        if self == Self::Register {
            let name = unique("fault");
            let email = format!("{name}@example.com");
            let body = register_body(&name, &email);
            return Prepared {
                request: Box::new(move || post("/auth/register", &body)),
                scope: Scope {
                    keys: vec![format!("EMAIL#{email}"), format!("USERNAME#{name}")],
                    emails: vec![email],
                    ..Scope::default()
                },
            };
        }
        let two_step = matches!(
            self,
            Self::LoginFirstStep | Self::MfaVerify | Self::TotpDisable | Self::TotpUndo
        );
        let (name, tokens, recovery) = if two_step {
            let (name, tokens, _, recovery) = crate::mfa::user_with_totp(deps).await;
            (name, tokens, recovery)
        } else {
            let (name, tokens) = sign_up(deps).await;
            if matches!(self, Self::TotpSetup | Self::TotpConfirm) {
                // A second factor goes only on a verified address.
                shared::testing::verify_address(deps, &tokens).await;
            }
            (name, tokens, Vec::new())
        };
        let email = format!("{name}@example.com");
        let user_id = tokens["user"]["id"].as_str().unwrap_or_default().to_owned();
        let bearer = shared::testing::bearer(&tokens);
        let refresh_token = tokens["refresh_token"].clone();
        let mut scope = Scope {
            keys: vec![
                format!("USER#{user_id}"),
                format!("EMAIL#{email}"),
                format!("USERNAME#{name}"),
            ],
            emails: vec![email.clone()],
            user_id,
        };
        let authed = move |method: &'static str, path: &'static str, body: Option<Value>| {
            let bearer = bearer.clone();
            Box::new(move || {
                request(
                    method,
                    path,
                    &[("authorization", bearer.as_str())],
                    body.as_ref(),
                )
            }) as Box<dyn Fn() -> Request + Send + Sync>
        };
        let plain = |path: &'static str, body: Value| {
            Box::new(move || post(path, &body)) as Box<dyn Fn() -> Request + Send + Sync>
        };
        let request = match self {
            Self::Register => unreachable!("handled above"),
            Self::Login => plain(
                "/auth/login",
                json!({"identifier": name, "password": PASSWORD}),
            ),
            Self::Refresh => plain("/auth/refresh", json!({"refresh_token": refresh_token})),
            Self::Logout => plain("/auth/logout", json!({"refresh_token": refresh_token})),
            Self::LogoutAll => plain(
                "/auth/logout",
                json!({"refresh_token": refresh_token, "scope": "global"}),
            ),
            Self::LogoutOthers => {
                second_session(deps, &name).await;
                plain(
                    "/auth/logout",
                    json!({"refresh_token": refresh_token, "scope": "others"}),
                )
            }
            Self::ListSessions => authed("GET", "/auth/sessions", None),
            Self::RevokeSession => {
                let other = shared::testing::sid(&second_session(deps, &name).await);
                let bearer = shared::testing::bearer(&tokens);
                Box::new(move || {
                    let path = format!("/auth/sessions/{other}");
                    request("DELETE", &path, &[("authorization", bearer.as_str())], None)
                })
            }
            Self::Me => authed("GET", "/auth/me", None),
            Self::UpdateMe => {
                let new_email = format!("new.{email}");
                scope.keys.push(format!("EMAIL#{new_email}"));
                scope.emails.push(new_email.clone());
                let body = json!({"email": new_email, "full_name": "Changed Name", "current_password": PASSWORD});
                authed("PATCH", "/auth/me", Some(body))
            }
            Self::ChangePassword => {
                let body = json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD});
                authed("POST", "/auth/password/change", Some(body))
            }
            Self::DeleteMe => authed("DELETE", "/auth/me", Some(json!({"password": PASSWORD}))),
            Self::Forgot => plain("/auth/password/forgot", json!({"email": email})),
            Self::Reset => {
                let asked = Self::Forgot
                    .send(
                        deps,
                        post("/auth/password/forgot", &json!({"email": email})),
                    )
                    .await;
                assert_eq!(asked.status(), 202);
                let code = mailed_code(&email).expect("a reset code was mailed");
                let body = json!({"email": email, "code": code, "new_password": NEW_PASSWORD});
                plain("/auth/password/reset", body)
            }
            Self::VerifyEmail => {
                let code = verification_code(&email).expect("registration mailed a code");
                plain("/auth/email/verify", json!({"email": email, "code": code}))
            }
            Self::ResendVerification => plain("/auth/email/verify/resend", json!({"email": email})),
            Self::LoginFirstStep => plain(
                "/auth/login",
                json!({"identifier": name, "password": PASSWORD}),
            ),
            Self::TotpSetup => authed(
                "POST",
                "/auth/mfa/totp/setup",
                Some(json!({"current_password": PASSWORD})),
            ),
            Self::TotpConfirm => {
                let setup = Self::TotpSetup
                    .send(
                        deps,
                        request(
                            "POST",
                            "/auth/mfa/totp/setup",
                            &[("authorization", &shared::testing::bearer(&tokens))],
                            Some(&json!({"current_password": PASSWORD})),
                        ),
                    )
                    .await;
                assert_eq!(setup.status(), 200);
                let code = crate::mfa::code(deps, &tokens, 0).await;
                authed(
                    "POST",
                    "/auth/mfa/totp/confirm",
                    Some(json!({"code": code})),
                )
            }
            Self::MfaVerify => {
                let mfa_token = crate::mfa::first_step(deps, &name).await;
                let code = crate::mfa::code(deps, &tokens, 1).await;
                plain(
                    "/auth/mfa/verify",
                    json!({"mfa_token": mfa_token, "code": code}),
                )
            }
            Self::TotpDisable => {
                let body = json!({"current_password": PASSWORD, "code": recovery[0]});
                authed("DELETE", "/auth/mfa/totp", Some(body))
            }
            Self::TotpUndo => {
                let code = undo_code(&email).expect("the notice mailed an undo code");
                plain("/auth/mfa/totp/undo", json!({"email": email, "code": code}))
            }
        };
        Prepared { request, scope }
    }
}

/// Signs `name` in once more (while no fault is armed): the token response of a second session.
async fn second_session(deps: &Deps<DynamoStore>, name: &str) -> Value {
    let body = json!({"identifier": name, "password": PASSWORD});
    let response = login::handle(deps, post("/auth/login", &body))
        .await
        .expect("infallible");
    assert_eq!(response.status(), 200);
    body_json(&response)
}

/// One test at a time: the local endpoint answers one request at a time, and a test's calls
/// must not wait on another's long enough to time out.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Dependencies whose AWS clients (DynamoDB and SES) go through `Faults`, with the production
/// retry policy (standard, 3 attempts) but short backoff and timeouts, so the matrix runs fast.
async fn faulty_deps() -> (Arc<Deps<DynamoStore>>, Faults) {
    faulty_deps_with(&[]).await
}

/// `faulty_deps`, with more configuration `vars`.
async fn faulty_deps_with(vars: &[(&str, &str)]) -> (Arc<Deps<DynamoStore>>, Faults) {
    let faults = Faults::new();
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_millis(500))
        .operation_attempt_timeout(Duration::from_millis(500))
        .operation_timeout(Duration::from_millis(1200))
        .build();
    let retry = aws_config::retry::RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(2));
    let sdk = shared::aws::sdk_config()
        .await
        .to_builder()
        .http_client(faults.clone())
        .timeout_config(timeouts)
        .retry_config(retry)
        .build();
    let (users, tokens, sessions) = fresh_tables().await;
    let mut all = vec![
        ("USERS_TABLE", users.as_str()),
        ("TOKENS_TABLE", tokens.as_str()),
        ("SESSIONS_TABLE", sessions.as_str()),
        ("FORGOT_ADDRESS_INTERVAL_SECONDS", "0"),
        ("FORGOT_ADDRESS_HOURLY_LIMIT", "1000"),
        ("FORGOT_CLIENT_LIMIT", "100000"),
    ];
    all.extend_from_slice(vars);
    let config = mail_config(&all);
    (Arc::new(deps_over(config, &sdk)), faults)
}

/// Empty copies of the tables `make test` made, for one test, so that what a test compares
/// before and after holds only its own items.
async fn fresh_tables() -> (String, String, String) {
    let client = aws_sdk_dynamodb::Client::new(&shared::aws::sdk_config().await);
    let mut names = Vec::new();
    for var in ["USERS_TABLE", "TOKENS_TABLE", "SESSIONS_TABLE"] {
        let source = std::env::var(var).unwrap_or_default();
        let described = client
            .describe_table()
            .table_name(&source)
            .send()
            .await
            .expect("the table `make test` made");
        let table = described.table.expect("a table description");
        let name = unique(&format!("{source}-"));
        client
            .create_table()
            .table_name(&name)
            .set_key_schema(table.key_schema)
            .set_attribute_definitions(table.attribute_definitions)
            .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
            .send()
            .await
            .expect("create a table");
        names.push(name);
    }
    (names.remove(0), names.remove(0), names.remove(0))
}

/// The endpoint's calls when nothing fails, one per attempt.
async fn calls_of(endpoint: Endpoint, deps: &Deps<DynamoStore>, faults: &Faults) -> Vec<String> {
    let prepared = endpoint.prepare(deps).await;
    faults.disarm();
    let response = endpoint.send(deps, (prepared.request)()).await;
    let calls = faults.calls();
    assert_eq!(
        response.status(),
        endpoint.success(),
        "{endpoint:?} without faults: {}",
        body_json(&response)
    );
    assert!(!calls.is_empty(), "{endpoint:?} calls AWS");
    calls
}

/// Every call the endpoint makes, failed with every fault that can happen to it, from that
/// call on (the dependency is down for the rest of the request).
async fn every_fault_at_every_call(endpoint: Endpoint) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (deps, faults) = faulty_deps().await;
    let calls = calls_of(endpoint, &deps, &faults).await;
    let mut cases = 0;
    for (index, operation) in calls.iter().enumerate() {
        for fault in Fault::ALL.into_iter().filter(|f| f.applies_to(operation)) {
            let case = format!("{endpoint:?}, {fault:?} from call {index} ({operation})");
            let prepared = endpoint.prepare(&deps).await;
            let before = snapshot(&deps, &prepared.scope, endpoint.may_change()).await;

            faults.arm(fault, Calls::From(index));
            let response = endpoint.send(&deps, (prepared.request)()).await;
            let failed = faults.failed();
            faults.disarm();

            assert!(failed > 0, "{case}: the fault was injected");
            if operation == "SendEmail" || endpoint.best_effort(index, &calls) {
                // SES-02: a mail that cannot be sent changes no answer; nor does bookkeeping
                // after the request has succeeded.
                assert_eq!(response.status(), endpoint.success(), "{case}");
            } else {
                expect_outage_answer(endpoint, &response, &case);
                let after = snapshot(&deps, &prepared.scope, endpoint.may_change()).await;
                assert_eq!(after, before, "{case}: nothing was half-written");
                let again = endpoint.send(&deps, (prepared.request)()).await;
                assert_eq!(
                    again.status(),
                    endpoint.success(),
                    "{case}: the same request works once the fault is gone: {}",
                    body_json(&again)
                );
            }
            cases += 1;
        }
    }
    assert!(cases >= calls.len(), "{endpoint:?}: {cases} cases");
    eprintln!("{endpoint:?}: {cases} faulty runs over the calls {calls:?}");
}

/// What a client gets while a dependency is down: a 503 problem it may retry, or for
/// forgot-password the one answer it always gets (FP-01).
fn expect_outage_answer(endpoint: Endpoint, response: &Response, case: &str) {
    let body = body_json(response);
    let accepted = match endpoint {
        Endpoint::Forgot => Some(forgot_password::ACCEPTED_MESSAGE),
        Endpoint::ResendVerification => Some(resend_verification::ACCEPTED_MESSAGE),
        _ => None,
    };
    if let Some(message) = accepted {
        assert_eq!(response.status(), 202, "{case}: {body}");
        assert_eq!(body["message"], message, "{case}");
        return;
    }
    assert_eq!(response.status(), 503, "{case}: {body}");
    assert_eq!(body["code"], "service_unavailable", "{case}");
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(retry_after.is_some_and(|s| s > 0), "{case}: Retry-After");
    let content_type = response.headers().get("content-type").map(|v| v.as_bytes());
    assert_eq!(
        content_type,
        Some(&b"application/problem+json"[..]),
        "{case}"
    );
    assert!(
        !body.to_string().contains("injected"),
        "{case}: the cause stays in the log"
    );
}

/// The scope's items, sorted, without the attributes the endpoint may change on purpose.
async fn snapshot(deps: &Deps<DynamoStore>, scope: &Scope, may_change: &[&str]) -> Vec<String> {
    let belongs = |item: &Item| {
        let pk = attr(item, "pk");
        scope.keys.iter().any(|k| k == pk)
            || scope.emails.iter().any(|e| attr(item, "email") == e)
            || (!scope.user_id.is_empty()
                && (attr(item, "user_id") == scope.user_id || attr(item, "id") == scope.user_id))
    };
    let mut items: Vec<String> = scan(&deps.config.tables.users)
        .await
        .into_iter()
        .chain(scan(&deps.config.tables.tokens).await)
        .chain(scan(&deps.config.tables.sessions).await)
        .filter(|item| belongs(item))
        // A pending address may be recorded (see `may_change`): its record goes with it.
        .filter(|item| {
            !(may_change.contains(&"pending_email") && attr(item, "pk").starts_with("PENDING#"))
        })
        .map(|mut item| {
            item.retain(|name, _| !may_change.contains(&name.as_str()));
            let sorted: std::collections::BTreeMap<_, _> = item.into_iter().collect();
            format!("{sorted:?}")
        })
        .collect();
    items.sort();
    items
}

macro_rules! fault_matrix {
    ($($name:ident => $endpoint:expr),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            every_fault_at_every_call($endpoint).await;
        }
    )*};
}

fault_matrix! {
    register_under_faults => Endpoint::Register,
    login_under_faults => Endpoint::Login,
    refresh_under_faults => Endpoint::Refresh,
    logout_under_faults => Endpoint::Logout,
    global_logout_under_faults => Endpoint::LogoutAll,
    me_under_faults => Endpoint::Me,
    update_me_under_faults => Endpoint::UpdateMe,
    change_password_under_faults => Endpoint::ChangePassword,
    delete_me_under_faults => Endpoint::DeleteMe,
    forgot_password_under_faults => Endpoint::Forgot,
    reset_password_under_faults => Endpoint::Reset,
    verify_email_under_faults => Endpoint::VerifyEmail,
    resend_verification_under_faults => Endpoint::ResendVerification,
    logout_others_under_faults => Endpoint::LogoutOthers,
    list_sessions_under_faults => Endpoint::ListSessions,
    revoke_session_under_faults => Endpoint::RevokeSession,
    login_first_step_under_faults => Endpoint::LoginFirstStep,
    totp_setup_under_faults => Endpoint::TotpSetup,
    totp_confirm_under_faults => Endpoint::TotpConfirm,
    mfa_verify_under_faults => Endpoint::MfaVerify,
    totp_disable_under_faults => Endpoint::TotpDisable,
    totp_undo_under_faults => Endpoint::TotpUndo,
}

#[tokio::test]
async fn a_single_failed_call_is_retried_and_the_request_succeeds() {
    // RL-02: throttling, a 500, a dropped connection or a hung call, once, is not an outage.
    let _turn = ONE_AT_A_TIME.lock().await;
    let (deps, faults) = faulty_deps().await;
    for endpoint in Endpoint::ALL {
        let calls = calls_of(endpoint, &deps, &faults).await;
        for index in 0..calls.len() {
            for fault in [
                Fault::Throttled,
                Fault::ServerError,
                Fault::ConnectionReset,
                Fault::Timeout,
            ] {
                let prepared = endpoint.prepare(&deps).await;
                faults.arm(fault, Calls::Only(index));
                let response = endpoint.send(&deps, (prepared.request)()).await;
                let seen = faults.calls();
                faults.disarm();
                let case = format!("{endpoint:?}, {fault:?} at call {index} ({})", calls[index]);
                assert_eq!(
                    response.status(),
                    endpoint.success(),
                    "{case}: {}",
                    body_json(&response)
                );
                assert_eq!(seen.len(), calls.len() + 1, "{case}: one retry: {seen:?}");
                // Calls made at once may come in any order: the retry is one more of its kind.
                let count = |list: &[String]| list.iter().filter(|c| **c == calls[index]).count();
                assert_eq!(
                    count(&seen),
                    count(&calls) + 1,
                    "{case}: the retry: {seen:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_spend_whose_answer_was_lost_is_not_taken_for_a_reuse() {
    // RT-03: the rotation commits, its answer is lost, and the SDK sends the same transaction
    // again. Even with strict rotation (no reuse interval) that retry must be the rotation it
    // was: 200 with a working successor, and the session not revoked as if the token came back.
    // It holds because the SDK fills the transaction's ClientRequestToken once and sends it with
    // each retry, and DynamoDB answers a repeat within 10 minutes as the commit it was: a
    // token made anew per attempt would fail here.
    let _turn = ONE_AT_A_TIME.lock().await;
    let (deps, faults) = faulty_deps_with(&[("REFRESH_REUSE_INTERVAL_SECONDS", "0")]).await;
    let calls = calls_of(Endpoint::Refresh, &deps, &faults).await;
    let rotation = calls
        .iter()
        .position(|call| call == "TransactWriteItems")
        .expect("refresh rotates in a transaction");
    let prepared = Endpoint::Refresh.prepare(&deps).await;
    faults.arm(Fault::LostAnswer, Calls::Only(rotation));
    let response = Endpoint::Refresh.send(&deps, (prepared.request)()).await;
    let seen = faults.calls();
    faults.disarm();
    assert_eq!(response.status(), 200, "{}", body_json(&response));
    assert_eq!(
        seen[rotation..=rotation + 1],
        ["TransactWriteItems", "TransactWriteItems"],
        "the lost answer made the SDK send the rotation again: {seen:?}"
    );
    let successor = body_json(&response)["refresh_token"].clone();
    let next = refresh::handle(
        &deps,
        post("/auth/refresh", &json!({"refresh_token": successor})),
    )
    .await
    .expect("infallible");
    assert_eq!(
        next.status(),
        200,
        "the session lives on: {}",
        body_json(&next)
    );
}

#[tokio::test]
async fn a_hung_dependency_is_cut_off_by_the_production_timeouts() {
    // RL-01: with the deployed SDK settings a call that never answers becomes a 503, well
    // before the function's own timeout.
    let _turn = ONE_AT_A_TIME.lock().await;
    let faults = Faults::new();
    let sdk = shared::aws::sdk_config()
        .await
        .to_builder()
        .http_client(faults.clone())
        .build();
    let (users, tokens, sessions) = fresh_tables().await;
    let config = mail_config(&[
        ("USERS_TABLE", &users),
        ("TOKENS_TABLE", &tokens),
        ("SESSIONS_TABLE", &sessions),
    ]);
    let deps = deps_over(config, &sdk);
    let prepared = Endpoint::Me.prepare(&deps).await;
    faults.arm(Fault::Timeout, Calls::Operation("GetItem"));
    let response = Endpoint::Me.send(&deps, (prepared.request)()).await;
    let attempts = faults.failed();
    faults.disarm();
    expect_outage_answer(Endpoint::Me, &response, "GetItem hangs");
    // The operator sees why, not just "unhandled error".
    assert!(
        log_text().contains("operation timeout"),
        "the cause is logged"
    );
    assert!(
        (1..=3).contains(&attempts),
        "bounded attempts, not {attempts}"
    );
}

#[tokio::test]
async fn every_table_write_is_a_single_call_or_a_transaction() {
    // Why "nothing half-written" holds: no endpoint makes two writes that must both happen
    // (throttling writes count a request before it is decided, and stand whatever follows).
    let _turn = ONE_AT_A_TIME.lock().await;
    let (deps, faults) = faulty_deps().await;
    let writes = ["TransactWriteItems", "PutItem", "UpdateItem", "DeleteItem"];
    for endpoint in Endpoint::ALL {
        let calls = calls_of(endpoint, &deps, &faults).await;
        let business_writes = calls
            .iter()
            .filter(|op| writes.contains(&op.as_str()))
            .count();
        let allowed = match endpoint {
            // The quota transaction, then the code.
            Endpoint::Forgot | Endpoint::ResendVerification => 2,
            // The address's wrong-code budget, the code's try from that address, the code
            // spent (the address verified), then the budget's unit given back.
            Endpoint::VerifyEmail => 4,
            // The address's wrong-code budget, the code's try from that address, the budget's
            // unit given back once the code matched, the address's trust, then the reset.
            Endpoint::Reset => 5,
            // The address's conflict budget, the account, then the budget's unit given back.
            Endpoint::Register => 3,
            // The address's budget and the reservation, each counted before the check; after a
            // right password, clearing the count, trusting the address, refunding the budget:
            // bookkeeping of throttles, none of which needs another to have happened; last,
            // the session's record (no tokens without it).
            Endpoint::Login => 6,
            // The session's re-authentication reserved and cleared, then the change itself
            // (for a password change, with the record of the session it begins).
            Endpoint::ChangePassword => 3,
            // The same, then the dead account's session record removed (best effort).
            Endpoint::DeleteMe => 4,
            // The address's budget and the reservation, counted before the check; after the
            // right password, the budget's unit and the reservation given back; then the
            // challenge.
            Endpoint::LoginFirstStep => 5,
            // The session's re-authentication reserved and cleared, then the pending secret.
            Endpoint::TotpSetup => 3,
            // The code's counts (the wrong-code budget, the account's second-step lock), the
            // secret enabled, then `code_accepted`'s bookkeeping.
            Endpoint::TotpConfirm => 6,
            // The challenge's try and the code's counts (the wrong-code budget, the lock), each
            // before the check; the transaction that ends the challenge, spends the code and
            // records the session; then the bookkeeping of `code_accepted` (the lock cleared,
            // the address trusted, the budget's unit given back).
            Endpoint::MfaVerify => 7,
            // Re-authentication (reserved, cleared), the code's counts, the removal that
            // spends it, then `code_accepted`'s bookkeeping.
            Endpoint::TotpDisable => 8,
            // The wrong-code budget, the code's tries (per client and in all, one transaction),
            // the removal that spends it and ends every session, the budget's unit given back.
            Endpoint::TotpUndo => 4,
            // Re-authentication (reserved, cleared), a unit of the probe budget (a 409 would
            // tell a taken name or address), the mail quotas of the new address's code, the
            // email change's request (a transaction: the user's pending address and code, and
            // the record naming the user under it), the profile, the unit given back.
            Endpoint::UpdateMe => 7,
            _ => 1,
        };
        assert!(
            business_writes <= allowed,
            "{endpoint:?} writes {business_writes} times: {calls:?}"
        );
    }
}
