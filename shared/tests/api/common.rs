//! Helpers for the integration tests: dependencies over the local DynamoDB endpoint with a call
//! counter, a capture of every log line, table scans.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};
use shared::clock::Clock;
use shared::config::Config;
use shared::handlers::Deps;
use shared::mail::SesMailer;
use shared::store::DynamoStore;
use shared::testing::CallCounter;
use shared::testing::{access_keys, post};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use uuid::Uuid;

pub type Item = HashMap<String, AttributeValue>;

pub const PASSWORD: &str = "correct horse battery staple";

/// Every log line of this test binary, as the functions would write them (JSON).
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

pub fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        // The functions' own log setup at its most verbose: nothing secret may appear even there.
        shared::logging::init_with(LevelFilter::TRACE, true, captured.clone());
        captured
    })
}

pub fn log_text() -> String {
    String::from_utf8_lossy(&logs().0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

pub async fn deps() -> Arc<Deps<DynamoStore>> {
    counted_deps().await.0
}

/// Dependencies whose DynamoDB client counts its calls.
pub async fn counted_deps() -> (Arc<Deps<DynamoStore>>, CallCounter) {
    counted_deps_with(config(), None).await
}

/// Dependencies with this configuration (and clock), whose DynamoDB client counts its calls.
pub async fn counted_deps_with(
    config: Config,
    clock: Option<Arc<dyn Clock>>,
) -> (Arc<Deps<DynamoStore>>, CallCounter) {
    let sdk = shared::aws::sdk_config().await;
    let counter = CallCounter::default();
    let store = counter.store(&sdk, &config);
    let mut deps = with_mailer(Deps::new(config, store, access_keys()), &sdk);
    if let Some(clock) = clock {
        deps = deps.with_clock(clock);
    }
    (Arc::new(deps), counter)
}

/// Dependencies over the AWS clients of `sdk`: DynamoDB, and SES when the configuration names a
/// sender.
pub fn deps_over(config: Config, sdk: &aws_config::SdkConfig) -> Deps<DynamoStore> {
    let client = aws_sdk_dynamodb::Client::new(sdk);
    let store = DynamoStore::new(client, &config.tables.users, &config.tables.tokens)
        .with_sessions_table(&config.tables.sessions);
    with_mailer(Deps::new(config, store, access_keys()), sdk)
}

fn with_mailer(deps: Deps<DynamoStore>, sdk: &aws_config::SdkConfig) -> Deps<DynamoStore> {
    logs();
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        endpoint.starts_with("http://127.0.0.1"),
        "these tests run against the local endpoint that `make test` starts (AWS_ENDPOINT_URL={endpoint:?})"
    );
    match deps.config.mail.from.clone() {
        Some(from) => {
            let ses = aws_sdk_sesv2::Client::new(sdk);
            let set = deps.config.mail.configuration_set.clone();
            deps.with_mailer(Arc::new(SesMailer::new(ses, from, set)))
        }
        None => deps,
    }
}

/// The per-address budgets, lifted: every test here sends from the sample event's one address
/// into one pair of tables, so they would spend each other's budget. The budgets are tested by
/// the handler tests, and here by tests that set their own.
const LIFTED_BUDGETS: [(&str, &str); 2] = [
    ("LOGIN_CLIENT_LIMIT", "1000000"),
    ("PROBE_CLIENT_LIMIT", "1000000"),
];

/// The test configuration, with the per-address budgets lifted, and `vars`.
pub fn config_with(vars: &[(&str, &str)]) -> Config {
    let mut all = LIFTED_BUDGETS.to_vec();
    all.extend_from_slice(vars);
    shared::testing::config_with(&all)
}

pub fn config() -> Config {
    config_with(&[])
}

/// Configuration for the mail tests: the sender `make test` verified at the local endpoint,
/// no minimum answer time, and `vars`.
pub fn mail_config(vars: &[(&str, &str)]) -> Config {
    let from = std::env::var("MAIL_FROM").unwrap_or_default();
    let mut all = vec![
        ("MAIL_FROM", from.as_str()),
        ("FORGOT_MIN_RESPONSE_MS", "0"),
    ];
    all.extend_from_slice(vars);
    config_with(&all)
}

/// The mail the local SES endpoint accepted for `to`, but the verification code that every
/// registration mails: (subject, body).
pub fn mails_to(to: &str) -> Vec<(String, String)> {
    let mut mails = all_mails_to(to);
    mails.retain(|(subject, _)| subject != VERIFICATION_SUBJECT);
    mails
}

const VERIFICATION_SUBJECT: &str = "Your email verification code";

/// Every mail the local SES endpoint accepted for `to`: (subject, body).
pub fn all_mails_to(to: &str) -> Vec<(String, String)> {
    use std::io::{Read, Write};
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    let address = endpoint.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("the local endpoint");
    let query: String = to
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let request = format!("GET /local/mail?to={query} HTTP/1.0\r\nHost: {address}\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("request");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("response");
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let mails: Vec<Value> = serde_json::from_str(body).expect("the local endpoint's mail list");
    mails
        .iter()
        .map(|m| {
            let text = |k: &str| m[k].as_str().unwrap_or_default().to_owned();
            (text("subject"), text("body"))
        })
        .collect()
}

/// The reset code in the newest reset mail to `to`.
pub fn mailed_code(to: &str) -> Option<String> {
    code_in_newest(to, "Your password reset code")
}

/// The code in the newest verification mail to `to`.
pub fn verification_code(to: &str) -> Option<String> {
    code_in_newest(to, VERIFICATION_SUBJECT)
}

/// The code that turns TOTP off, in the newest "two-step sign-in is on" notice to `to`.
pub fn undo_code(to: &str) -> Option<String> {
    code_in_newest(to, "Two-step sign-in is on")
}

fn code_in_newest(to: &str, subject: &str) -> Option<String> {
    let mails = all_mails_to(to);
    let (_, body) = mails.iter().rev().find(|(s, _)| s == subject)?;
    let start = body.find("<strong>")? + "<strong>".len();
    Some(
        body[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect(),
    )
}

pub async fn scan_users() -> Vec<Item> {
    scan(&std::env::var("USERS_TABLE").unwrap_or_default()).await
}

pub async fn scan_tokens() -> Vec<Item> {
    scan(&std::env::var("TOKENS_TABLE").unwrap_or_default()).await
}

pub async fn scan(table: &str) -> Vec<Item> {
    let sdk = shared::aws::sdk_config().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scan a table");
        items.extend(page.items.unwrap_or_default());
        start = page.last_evaluated_key;
        if start.is_none() {
            return items;
        }
    }
}

pub fn number(item: &Item, name: &str) -> u64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_default()
}

/// The claims of a token, read without verification (for assertions on stored state).
pub fn claims(token: &Value) -> Value {
    use base64ct::Encoding;
    let payload = token
        .as_str()
        .and_then(|t| t.split('.').nth(1))
        .unwrap_or_default();
    let bytes = base64ct::Base64UrlUnpadded::decode_vec(payload).unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or_default()
}

/// Registers a fresh user through the handler; returns its username and token response.
pub async fn sign_up(deps: &Deps<DynamoStore>) -> (String, Value) {
    let name = unique("user");
    let email = format!("{name}@example.com");
    let response = register_as(deps, &name, &email).await.expect("infallible");
    assert_eq!(response.status(), 201);
    (name, shared::testing::body_json(&response))
}

pub fn attr<'a>(item: &'a Item, name: &str) -> &'a str {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map_or("", String::as_str)
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", &Uuid::new_v4().simple().to_string()[..12])
}

pub fn register_body(username: &str, email: &str) -> Value {
    json!({"username": username, "email": email, "password": PASSWORD})
}

/// The status `GET /auth/me` answers to the access token of `tokens`.
pub async fn me_status(deps: &Deps<DynamoStore>, tokens: &Value) -> u16 {
    let req = shared::testing::get(
        "/auth/me",
        &[("authorization", &shared::testing::bearer(tokens))],
    );
    let response = shared::handlers::me::handle(deps, req).await;
    response.expect("infallible").status().as_u16()
}

/// `POST /auth/register` of `name` with `email` and the test password.
pub async fn register_as(
    deps: &Deps<DynamoStore>,
    name: &str,
    email: &str,
) -> Result<shared::http::Response, std::convert::Infallible> {
    let req = post("/auth/register", &register_body(name, email));
    shared::handlers::register::handle(deps, req).await
}
