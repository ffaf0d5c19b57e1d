//! Property tests: every parser and validator takes arbitrary input without panicking, and a
//! token altered in any byte never verifies.

use lambda_http::{Body, Request};
use proptest::prelude::*;
use shared::domain::{Email, FullName, Identifier, NewPassword, PasswordAttempt, Username};
use shared::error::ApiError;
use shared::http::{bearer_token, cookie, read_with};
use shared::jwt::{TokenKeys, TokenUse};
use shared::mailed_codes::MailedCodes;
use shared::testing::config;

fn request(content_type: &str, body: Vec<u8>, headers: &[(&'static str, String)]) -> Request {
    let mut req = Request::new(Body::from(body));
    if let Ok(value) = content_type.parse() {
        req.headers_mut().insert("content-type", value);
    }
    for (name, value) in headers {
        if let Ok(value) = value.parse() {
            req.headers_mut().insert(*name, value);
        }
    }
    req
}

fn now() -> u64 {
    time::OffsetDateTime::now_utc()
        .unix_timestamp()
        .unsigned_abs()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn validators_take_any_string(input in any::<String>()) {
        let _ = Email::parse(&input);
        let _ = Username::parse(&input);
        let _ = Identifier::parse(&input);
        let _ = FullName::parse(&input);
        let _ = NewPassword::parse(&input, &[&input]);
        let _ = PasswordAttempt::parse(&input);
        let _ = MailedCodes::is_well_formed(&input);
    }

    #[test]
    fn accepted_values_are_normalised_and_stable(input in "[A-Za-z0-9_.-]{1,40}(@[a-z0-9-]{1,10}\\.[a-z]{2,5})?") {
        // Whatever passes is in its canonical form: parsing it again gives the same value.
        if let Ok(email) = Email::parse(&input) {
            prop_assert_eq!(Email::parse(email.as_str()), Ok(email.clone()));
            prop_assert_eq!(email.as_str(), email.as_str().to_lowercase());
        }
        if let Ok(username) = Username::parse(&input) {
            prop_assert!(!username.as_str().contains('@'));
            prop_assert_eq!(Username::parse(username.as_str()), Ok(username.clone()));
        }
    }

    #[test]
    fn body_parsing_takes_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..20_000), json in any::<bool>()) {
        let content_type = if json { "application/json" } else { "text/plain" };
        let req = request(content_type, body, &[]);
        let refused = read_with(&req, |body| body.optional_text("a")).err();
        let status = refused.map(|e| e.status().as_u16());
        prop_assert!(status.is_none_or(|status| (400..500).contains(&status)));
    }

    #[test]
    fn every_field_of_the_wrong_type_is_named(value in any::<(Option<String>, Option<i64>, bool)>()) {
        let body = serde_json::json!({"username": value.0, "email": value.1, "x": value.2});
        let req = request("application/json", body.to_string().into_bytes(), &[]);
        let read = read_with(&req, |body| {
            let username = body.optional_text("username");
            let email = body.optional_text("email");
            Some((username?, email?))
        });
        let Err(ApiError::Validation(errors)) = read else {
            return Err(TestCaseError::fail("x is not a field of the body"));
        };
        let mut named = vec!["x"];
        if value.1.is_some() {
            named.insert(0, "email");
        }
        prop_assert_eq!(errors.keys().map(String::as_str).collect::<Vec<_>>(), named);
    }

    #[test]
    fn header_parsing_takes_any_value(value in "[ -~]{0,300}") {
        let req = request("application/json", Vec::new(), &[
            ("authorization", value.clone()),
            ("cookie", value.clone()),
            ("origin", value.clone()),
        ]);
        let _ = bearer_token(&req);
        let _ = cookie(&req, "__Host-access_token");
    }

    #[test]
    fn token_verification_takes_any_string(token in any::<String>()) {
        let keys = TokenKeys::new(&config(), shared::testing::access_keys());
        prop_assert!(keys.verify(&token, TokenUse::Access, now()).is_err());
        prop_assert!(keys.verify(&token, TokenUse::Refresh, now()).is_err());
    }

    #[test]
    fn a_token_altered_in_any_byte_never_verifies(position in any::<prop::sample::Index>(), replacement in any::<u8>()) {
        let keys = TokenKeys::new(&config(), shared::testing::access_keys());
        let user = shared::domain::UserRecord::new(
            Username::parse("alice").map_err(TestCaseError::fail)?,
            Email::parse("alice@example.com").map_err(TestCaseError::fail)?,
            None,
            String::new(),
            time::OffsetDateTime::now_utc(),
        );
        let token = keys.sign(keys.access_claims(&user, "sid", now())).map_err(|_| TestCaseError::fail("sign"))?.token;
        let mut bytes = token.clone().into_bytes();
        let at = position.index(bytes.len());
        prop_assume!(bytes[at] != replacement);
        bytes[at] = replacement;
        let altered = String::from_utf8_lossy(&bytes).into_owned();
        prop_assume!(altered != token);
        prop_assert!(keys.verify(&altered, TokenUse::Access, now()).is_err(), "verified after altering byte {}", at);
    }
}
