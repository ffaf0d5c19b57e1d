//! Request bodies: the limits every body is held to, and typed bodies read in one step.
//!
//! An endpoint declares what it takes as a struct and implements [`RequestBody`] for it by
//! asking [`Fields`] for each field with the parser of its type. [`read`] does the rest: the
//! size, media type and JSON checks, a field the struct did not ask for refused (RG-03: no mass
//! assignment), and every problem of every field reported at once as the 422's `errors`.
//!
//! Why not `#[derive(Deserialize)]`: serde stops at the first problem, and the contract promises
//! the client all of them in one answer (a form shows every field's complaint together).

use lambda_http::Request;
use lambda_http::http::{HeaderMap, header};
use serde_json::{Map, Value};

use crate::error::{ApiError, FieldErrors};

/// Bodies above this size are refused before parsing (AG-06).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

const APPLICATION_JSON: &str = "application/json";

/// A request body an endpoint reads from its fields.
pub trait RequestBody: Sized {
    /// Asks `fields` for every field the body has, each with its parser, and builds the body
    /// when all of them are valid. Ask for every field before giving up on any (bind each
    /// answer, then `?` them together), so that all problems are reported at once.
    fn read(fields: &mut Fields) -> Option<Self>;
}

/// Reads a required body: a JSON object, every field valid and known.
pub fn read<T: RequestBody>(req: &Request) -> Result<T, ApiError> {
    read_with(req, T::read)
}

/// Reads a required body with `read` (a body of one field needs no type of its own).
pub fn read_with<T>(
    req: &Request,
    read: impl FnOnce(&mut Fields) -> Option<T>,
) -> Result<T, ApiError> {
    let object = json_object(req)?
        .ok_or_else(|| ApiError::invalid_field("body", "a JSON object is required"))?;
    Fields::from(object).finish(read)
}

/// Like [`read`], but no body at all reads as `{}` (for bodies whose every field is optional).
pub fn read_or_empty<T: RequestBody>(req: &Request) -> Result<T, ApiError> {
    Fields::from(json_object(req)?.unwrap_or_default()).finish(T::read)
}

/// The body as a JSON object: `application/json`, at most 16 KiB, valid JSON, an object. An
/// empty body is `None`.
fn json_object(req: &Request) -> Result<Option<Map<String, Value>>, ApiError> {
    let bytes: &[u8] = req.body().as_ref();
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge);
    }
    let empty = bytes.iter().all(u8::is_ascii_whitespace);
    if empty && !req.headers().contains_key(header::CONTENT_TYPE) {
        return Ok(None);
    }
    if !is_json_content_type(req.headers()) {
        return Err(ApiError::UnsupportedMediaType);
    }
    if empty {
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(ApiError::invalid_field("body", "must be a JSON object")),
        Err(_) => Err(ApiError::MalformedJson),
    }
}

/// `application/json`, optionally with parameters (`; charset=utf-8`). Nothing else, so no HTML
/// form (`text/plain`, `application/x-www-form-urlencoded`, `multipart/form-data`) can post here.
fn is_json_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(APPLICATION_JSON))
}

/// A field that may be left out, or sent as `null` to clear what it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<T> {
    /// Absent: leave it as it is.
    Keep,
    /// `null`: clear it.
    Clear,
    /// A valid value: set it.
    Set(T),
}

/// The fields of a JSON object body, asked for one by one. It keeps every problem it meets and
/// which fields were asked for, so that anything else can be refused.
#[derive(Debug)]
pub struct Fields {
    object: Map<String, Value>,
    asked: Vec<&'static str>,
    errors: FieldErrors,
}

impl From<Map<String, Value>> for Fields {
    fn from(object: Map<String, Value>) -> Self {
        Self {
            object,
            asked: Vec::new(),
            errors: FieldErrors::new(),
        }
    }
}

impl Fields {
    /// A field that must be present, parsed by `parse`.
    pub fn required<T, E: ToString>(
        &mut self,
        key: &'static str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        match self.optional(key, parse) {
            Some(None) if !self.errors.contains_key(key) => {
                self.refuse(key, "is required");
                None
            }
            value => value.flatten(),
        }
    }

    /// A field that may be absent (or `null`): `Some(None)` when it is, `None` when it is
    /// present but invalid.
    pub fn optional<T, E: ToString>(
        &mut self,
        key: &'static str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<Option<T>> {
        match self.change(key, parse)? {
            Change::Set(value) => Some(Some(value)),
            Change::Keep | Change::Clear => Some(None),
        }
    }

    /// A field whose absence keeps what it names and whose `null` clears it.
    pub fn change<T, E: ToString>(
        &mut self,
        key: &'static str,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<Change<T>> {
        self.asked.push(key);
        let outcome = match self.object.get(key) {
            None => Ok(Change::Keep),
            Some(Value::Null) => Ok(Change::Clear),
            Some(Value::String(raw)) => parse(raw).map(Change::Set).map_err(|e| e.to_string()),
            Some(_) => Err("must be a string".to_owned()),
        };
        outcome.map_err(|reason| self.refuse(key, reason)).ok()
    }

    /// A string field that must be present, as it was sent.
    pub fn required_text(&mut self, key: &'static str) -> Option<String> {
        self.required(key, as_sent)
    }

    /// A string field that may be absent (or `null`), as it was sent.
    pub fn optional_text(&mut self, key: &'static str) -> Option<Option<String>> {
        self.optional(key, as_sent)
    }

    /// Whether the field was sent at all (`null` included). It counts as asked for.
    pub fn sent(&mut self, key: &'static str) -> bool {
        self.asked.push(key);
        self.object.contains_key(key)
    }

    /// Records a complaint about a field (the first one stands).
    pub fn refuse(&mut self, key: &str, reason: impl Into<String>) {
        self.errors
            .entry(key.to_owned())
            .or_insert_with(|| reason.into());
    }

    /// Runs `read`, refuses every field it did not ask for, and answers the body or every
    /// complaint at once.
    fn finish<T>(mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Result<T, ApiError> {
        let body = read(&mut self);
        let unknown: Vec<String> = (self.object.keys())
            .filter(|key| !self.asked.contains(&key.as_str()))
            // Echo at most a short, printable prefix of an attacker-chosen key.
            .map(|key| key.chars().filter(|c| !c.is_control()).take(64).collect())
            .collect();
        for key in unknown {
            self.refuse(&key, "is not a known field");
        }
        match body {
            Some(body) if self.errors.is_empty() => Ok(body),
            _ => Err(ApiError::Validation(self.errors)),
        }
    }
}

fn as_sent(raw: &str) -> Result<String, std::convert::Infallible> {
    Ok(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::Body;
    use lambda_http::http;

    fn request(content_type: Option<&str>, body: &str) -> Request {
        let mut builder = http::Request::builder().method("POST").uri("/auth/login");
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        builder.body(Body::from(body.to_owned())).expect("request")
    }

    /// A body of four fields, one of each kind.
    #[derive(Debug)]
    struct Sample {
        a: String,
        b: u8,
        c: Option<String>,
        d: Change<String>,
    }

    impl RequestBody for Sample {
        fn read(fields: &mut Fields) -> Option<Self> {
            let a = fields.required_text("a");
            let b = fields.required("b", str::parse::<u8>);
            let c = fields.optional_text("c");
            let d = fields.change("d", as_sent);
            Some(Self {
                a: a?,
                b: b?,
                c: c?,
                d: d?,
            })
        }
    }

    fn sample(body: &str) -> Result<Sample, ApiError> {
        read(&request(Some("application/json"), body))
    }

    fn complaints(body: &str) -> FieldErrors {
        match sample(body) {
            Err(ApiError::Validation(errors)) => errors,
            other => panic!("expected a 422, got {other:?}"),
        }
    }

    #[test]
    fn body_checks_answer_4xx() {
        let code = |ct, body: &str| {
            read::<Sample>(&request(ct, body))
                .expect_err("refused")
                .code()
        };
        assert_eq!(code(Some("application/json"), "{"), "malformed_json");
        assert_eq!(code(Some("application/json"), "[1]"), "validation_failed");
        assert_eq!(code(Some("text/plain"), "{}"), "unsupported_media_type");
        assert_eq!(
            code(Some("application/x-www-form-urlencoded"), "a=b"),
            "unsupported_media_type"
        );
        assert_eq!(code(None, "{}"), "unsupported_media_type");
        assert_eq!(code(Some("application/json"), ""), "validation_failed");
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_BODY_BYTES));
        assert_eq!(code(Some("application/json"), &big), "payload_too_large");
        // A body API Gateway delivered base64-encoded, not valid UTF-8.
        let mut binary = request(Some("application/json"), "");
        *binary.body_mut() = Body::Binary(vec![b'{', b'"', 0xff, b'"', b':', b'1', b'}']);
        assert_eq!(
            read::<Sample>(&binary).expect_err("refused").code(),
            "malformed_json"
        );
    }

    #[test]
    fn a_valid_body_reads_into_its_type() {
        let body = sample(r#"{"a":"x","b":"7","d":null}"#).expect("valid");
        assert_eq!((body.a.as_str(), body.b, body.c), ("x", 7, None));
        assert_eq!(body.d, Change::Clear);
        let body = sample(r#"{"a":"x","b":"7","c":"y","d":"z"}"#).expect("valid");
        assert_eq!(
            (body.c.as_deref(), body.d),
            (Some("y"), Change::Set("z".into()))
        );
        assert_eq!(
            sample(r#"{"a":"x","b":"7"}"#).expect("valid").d,
            Change::Keep
        );
        let charset = request(
            Some("Application/JSON; charset=utf-8"),
            r#"{"a":"x","b":"1"}"#,
        );
        assert!(read::<Sample>(&charset).is_ok());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let errors = complaints(r#"{"b":"300","c":1,"d":[],"role":"admin"}"#);
        let says = |key: &str| errors.get(key).map(String::as_str);
        assert_eq!(says("a"), Some("is required"));
        assert!(
            says("b").is_some_and(|reason| reason.contains("large")),
            "{errors:?}"
        );
        assert_eq!(says("c"), Some("must be a string"));
        assert_eq!(says("d"), Some("must be a string"));
        assert_eq!(says("role"), Some("is not a known field"));
        assert_eq!(errors.len(), 5);
        // A required field sent as null is missing; an optional one is absent.
        let errors = complaints(r#"{"a":null,"b":"1","c":null}"#);
        assert_eq!(errors.keys().collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn an_empty_body_is_no_body() {
        let empty = request(None, "");
        assert_eq!(
            read::<Sample>(&empty).expect_err("required").code(),
            "validation_failed"
        );
        let errors = match read_or_empty::<Sample>(&empty) {
            Err(ApiError::Validation(errors)) => errors,
            other => panic!("expected a 422, got {other:?}"),
        };
        assert_eq!(errors.keys().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn unknown_keys_are_echoed_short_and_printable() {
        let key = format!("x\u{7}{}", "k".repeat(100));
        let errors = complaints(&serde_json::json!({"a": "x", "b": "1", key: "v"}).to_string());
        let shown = errors.keys().next().expect("one complaint");
        assert_eq!(shown.chars().count(), 64);
        assert!(!shown.chars().any(char::is_control));
    }
}
