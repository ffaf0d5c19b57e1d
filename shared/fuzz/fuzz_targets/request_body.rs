//! The request body reader and every field validator, then two whole handlers, on arbitrary
//! bytes: nothing panics, a body is accepted only if it is a JSON object of at most 16 KiB sent
//! as `application/json`, and every refusal is a 4xx problem.
#![no_main]

use std::sync::OnceLock;

use lambda_http::{Body, Request};
use libfuzzer_sys::fuzz_target;
use shared::domain::{Email, FullName, Identifier, NewPassword, PasswordAttempt, Username};
use shared::handlers::{Deps, forgot_password, refresh};
use shared::http::{self, MAX_BODY_BYTES};
use shared::mailed_codes::MailedCodes;
use shared::testing::MemoryStore;
use shared::testing::config_with;

const CONTENT_TYPES: [Option<&str>; 5] = [
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("APPLICATION/JSON"),
    Some("text/plain"),
    None,
];

const FIELDS: [&str; 10] = [
    "username",
    "email",
    "password",
    "full_name",
    "identifier",
    "refresh_token",
    "current_password",
    "new_password",
    "code",
    "scope",
];

fn deps() -> &'static Deps<MemoryStore> {
    static DEPS: OnceLock<Deps<MemoryStore>> = OnceLock::new();
    DEPS.get_or_init(|| {
        let config = config_with(&[
            ("FORGOT_MIN_RESPONSE_MS", "0"),
            ("FORGOT_ADDRESS_INTERVAL_SECONDS", "0"),
            ("FORGOT_ADDRESS_HOURLY_LIMIT", "1000000"),
            ("FORGOT_CLIENT_LIMIT", "1000000"),
        ]);
        Deps::new(config, MemoryStore::new(), shared::testing::access_keys())
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
    })
}

fn request(content_type: Option<&str>, body: &[u8]) -> Request {
    let mut req = Request::new(Body::from(body.to_vec()));
    *req.method_mut() = lambda_http::http::Method::POST;
    if let Some(value) = content_type {
        req.headers_mut()
            .insert("content-type", value.parse().expect("a header value"));
    }
    req
}

/// Every field any endpoint reads, as text (absent ones left out).
fn every_field(fields: &mut http::Fields) -> Option<Vec<String>> {
    let values: Vec<Option<Option<String>>> = FIELDS
        .iter()
        .map(|field| fields.optional_text(field))
        .collect();
    let values: Option<Vec<Option<String>>> = values.into_iter().collect();
    Some(values?.into_iter().flatten().collect())
}

fn validate(value: &str) {
    if let Ok(email) = Email::parse(value) {
        assert_eq!(Email::parse(email.as_str()), Ok(email.clone()), "canonical");
    }
    if let Ok(username) = Username::parse(value) {
        assert!(!username.as_str().contains('@'));
    }
    let _ = Identifier::parse(value);
    let _ = FullName::parse(value);
    let _ = NewPassword::parse(value, &[value]);
    let _ = PasswordAttempt::parse(value);
    let _ = MailedCodes::is_well_formed(value);
}

fn assert_problem(response: &http::Response) {
    assert!(response.status().is_client_error(), "{}", response.status());
    let body: serde_json::Value =
        serde_json::from_slice(response.body().as_ref()).expect("a problem is JSON");
    assert!(body["code"].is_string(), "a problem has a code");
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()];
    match http::read_with(&request(content_type, body), every_field) {
        Ok(values) => {
            assert!(body.len() <= MAX_BODY_BYTES);
            assert!(content_type.is_some_and(|c| c.to_lowercase().starts_with("application/json")));
            let parsed: serde_json::Value = serde_json::from_slice(body).expect("valid JSON");
            assert!(parsed.is_object());
            values.iter().map(String::as_str).for_each(validate);
        }
        Err(err) => assert_problem(&http::problem(&err)),
    }
    // Whole handlers, as Lambda would call them (neither hashes a password).
    if selector & 0x80 != 0 {
        for handler in [0, 1] {
            let req = request(content_type, body);
            let response = runtime().block_on(async {
                match handler {
                    0 => forgot_password::handle(deps(), req).await,
                    _ => refresh::handle(deps(), req).await,
                }
            });
            let response = response.expect("infallible");
            if !response.status().is_success() {
                assert_problem(&response);
            }
        }
    }
});
