//! The HTTP side of the contract: body parsing with its limits, JSON and problem responses with
//! the security headers every answer carries, token delivery modes, cookies and origin checks.

use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt};
use serde::Serialize;

use crate::config::SameSite;
use crate::error::{ApiError, FieldErrors};

mod body;

pub use body::{Change, Fields, MAX_BODY_BYTES, RequestBody, read, read_or_empty, read_with};

pub type Response = lambda_http::Response<Body>;

/// The access-token cookie: `__Host-` binds it to this host and `Path=/`.
pub const ACCESS_COOKIE: &str = "__Host-access_token";
/// The refresh-token cookie, sent only to `/auth` (a `__Host-` cookie cannot be path-scoped).
pub const REFRESH_COOKIE: &str = "__Secure-refresh_token";

const PROBLEM_JSON: &str = "application/problem+json";
const APPLICATION_JSON: &str = "application/json";

// ---------------------------------------------------------------------------------------------
// Request metadata

/// How the client wants its tokens: in the body (API and mobile clients) or only as cookies
/// (browser SPAs, `X-Token-Delivery: cookie`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenDelivery {
    Body,
    Cookie,
}

impl TokenDelivery {
    /// The mode `X-Token-Delivery` asks for: body mode without the header. Any other value
    /// than `cookie` or `body` is refused (422) rather than read as body mode: a browser app
    /// that misspells it must not get its tokens in a readable body.
    pub fn of(req: &Request) -> Result<Self, ApiError> {
        let Some(value) = req.headers().get("x-token-delivery") else {
            return Ok(Self::Body);
        };
        match value.to_str().map(str::trim) {
            Ok(v) if v.eq_ignore_ascii_case("cookie") => Ok(Self::Cookie),
            Ok(v) if v.eq_ignore_ascii_case("body") => Ok(Self::Body),
            _ => Err(ApiError::invalid_field(
                "X-Token-Delivery",
                "must be cookie or body",
            )),
        }
    }
}

/// The value of one cookie of the request.
///
/// A request that carries the cookie twice is refused (`invalid_token`): a sibling subdomain can
/// plant a cookie of the same name with a longer path, which the browser sends first, so there
/// is no telling which one is ours (cookie tossing).
pub fn cookie<'r>(req: &'r Request, name: &str) -> Result<Option<&'r str>, ApiError> {
    let mut values = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v.trim());
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::InvalidToken);
    }
    Ok(first.filter(|v| !v.is_empty()))
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The client address API Gateway saw (never `X-Forwarded-For`, which the client controls).
pub fn source_ip(req: &Request) -> Option<String> {
    match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => ctx.http.source_ip.clone(),
        _ => None,
    }
}

/// CSRF defence for browser requests (CS-02): a state-changing request must come from one of the
/// allowed origins, matched exactly. `required` is true when the request is authenticated by a
/// cookie; otherwise only a present-but-foreign `Origin` is refused.
pub fn check_origin(
    req: &Request,
    allowed: &std::collections::BTreeSet<String>,
    required: bool,
) -> Result<(), ApiError> {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    match req.headers().get(header::ORIGIN).map(HeaderValue::to_str) {
        Some(Ok(origin)) if allowed.contains(origin) => Ok(()),
        None if !required => Ok(()),
        _ => {
            tracing::warn!(
                event = "csrf_rejected",
                "state-changing request from a foreign or missing origin"
            );
            Err(ApiError::CsrfRejected)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Responses

/// A JSON response with the security headers.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => with_headers(status, APPLICATION_JSON, Body::from(bytes)),
        Err(err) => {
            tracing::error!(error = %err, "response serialization failed");
            problem(&ApiError::Internal)
        }
    }
}

/// An empty response (204) with the security headers.
pub fn no_content() -> Response {
    let mut response = with_headers(StatusCode::NO_CONTENT, APPLICATION_JSON, Body::Empty);
    response.headers_mut().remove(header::CONTENT_TYPE);
    response
}

#[derive(Serialize)]
struct Problem<'a> {
    r#type: String,
    title: &'a str,
    status: u16,
    detail: String,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a FieldErrors>,
}

/// An RFC 9457 problem response for `err`. Server errors say nothing about their cause.
pub fn problem(err: &ApiError) -> Response {
    let status = err.status();
    let body = Problem {
        r#type: format!("tag:auth,2026:problem:{}", err.code()),
        title: status.canonical_reason().unwrap_or("Error"),
        status: status.as_u16(),
        detail: err.to_string(),
        code: err.code(),
        errors: match err {
            ApiError::Validation(errors) => Some(errors),
            _ => None,
        },
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut response = with_headers(status, PROBLEM_JSON, Body::from(bytes));
    let headers = response.headers_mut();
    if status == StatusCode::UNAUTHORIZED {
        let challenge = match err {
            ApiError::InvalidCredentials => "Bearer realm=\"auth\"",
            _ => "Bearer realm=\"auth\", error=\"invalid_token\"",
        };
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    if let Some(secs) = err.retry_after_secs() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    response
}

/// What every answer carries (HD-01): not cached, not sniffed, HTTPS only, nothing loaded or
/// framed, no referrer.
const SECURITY_HEADERS: [(header::HeaderName, &str); 5] = [
    (header::CACHE_CONTROL, "no-store"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=63072000; includeSubDomains",
    ),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'",
    ),
    (header::REFERRER_POLICY, "no-referrer"),
];

fn with_headers(status: StatusCode, content_type: &'static str, body: Body) -> Response {
    let mut response = lambda_http::Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Adds one `Set-Cookie` header. Each cookie is its own header, which the runtime turns into the
/// Lambda response's `cookies` list (CK-05).
pub fn set_cookie(
    response: &mut Response,
    name: &str,
    value: &str,
    path: &str,
    max_age_secs: i64,
    same_site: SameSite,
) {
    let cookie = format!(
        "{name}={value}; Path={path}; Max-Age={}; HttpOnly; Secure; SameSite={}",
        max_age_secs.max(0),
        same_site.as_str()
    );
    match HeaderValue::from_str(&cookie) {
        Ok(v) => {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
        Err(_) => tracing::error!(cookie = name, "cookie value is not a valid header"),
    }
}

/// Clears both token cookies (CK-06).
pub fn clear_token_cookies(response: &mut Response, same_site: SameSite) {
    set_cookie(response, ACCESS_COOKIE, "", "/", 0, same_site);
    set_cookie(response, REFRESH_COOKIE, "", "/auth", 0, same_site);
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http;

    #[test]
    fn every_response_carries_the_security_headers() {
        // HD-01, on success and on error alike.
        for response in [
            json(StatusCode::OK, &"ok"),
            problem(&ApiError::InvalidToken),
            no_content(),
        ] {
            let h = response.headers();
            assert_eq!(h["cache-control"], "no-store");
            assert_eq!(h["x-content-type-options"], "nosniff");
            assert!(
                h["strict-transport-security"]
                    .to_str()
                    .unwrap_or("")
                    .starts_with("max-age=")
            );
            assert!(
                h["content-security-policy"]
                    .to_str()
                    .unwrap_or("")
                    .contains("frame-ancestors 'none'")
            );
        }
    }

    #[test]
    fn problems_follow_rfc_9457() {
        let response = problem(&ApiError::invalid_field("email", "is not an email address"));
        assert_eq!(response.status(), 422);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body: serde_json::Value =
            serde_json::from_slice(response.body().as_ref()).expect("json");
        assert_eq!(body["status"], 422);
        assert_eq!(body["code"], "validation_failed");
        assert_eq!(body["errors"]["email"], "is not an email address");
        assert!(
            body["type"]
                .as_str()
                .is_some_and(|t| t.ends_with("validation_failed"))
        );

        let unauthorized = problem(&ApiError::InvalidToken);
        assert!(
            unauthorized.headers()["www-authenticate"]
                .to_str()
                .unwrap_or("")
                .starts_with("Bearer")
        );
        let limited = problem(&ApiError::TooManyAttempts {
            retry_after_secs: 42,
        });
        assert_eq!(limited.headers()["retry-after"], "42");
    }

    #[test]
    fn cookies_are_separate_headers_with_strict_attributes() {
        let mut response = no_content();
        set_cookie(
            &mut response,
            ACCESS_COOKIE,
            "a.b.c",
            "/",
            600,
            SameSite::Strict,
        );
        set_cookie(
            &mut response,
            REFRESH_COOKIE,
            "d.e.f",
            "/auth",
            604_800,
            SameSite::Strict,
        );
        let cookies: Vec<_> = response.headers().get_all("set-cookie").iter().collect();
        assert_eq!(cookies.len(), 2);
        assert_eq!(
            cookies[0],
            "__Host-access_token=a.b.c; Path=/; Max-Age=600; HttpOnly; Secure; SameSite=Strict"
        );
        assert!(!cookies[1].to_str().unwrap_or("").contains("Domain"));
    }

    #[test]
    fn reads_cookies_bearer_and_delivery_mode() {
        let req = http::Request::builder()
            .header("cookie", "other=1; __Host-access_token=tok; x=")
            .header("authorization", "Bearer  abc ")
            .header("x-token-delivery", "Cookie")
            .body(Body::Empty)
            .expect("request");
        assert_eq!(cookie(&req, ACCESS_COOKIE).ok(), Some(Some("tok")));
        assert_eq!(cookie(&req, "x").ok(), Some(None));
        assert_eq!(bearer_token(&req), Some("abc"));
        assert_eq!(TokenDelivery::of(&req).ok(), Some(TokenDelivery::Cookie));
    }

    #[test]
    fn a_delivery_mode_other_than_cookie_or_body_is_refused() {
        let with = |value: Option<&[u8]>| {
            let mut req = http::Request::builder();
            if let Some(value) = value {
                req = req.header("x-token-delivery", value);
            }
            TokenDelivery::of(&req.body(Body::Empty).expect("request"))
        };
        assert_eq!(with(None).ok(), Some(TokenDelivery::Body));
        assert_eq!(with(Some(b" body ")).ok(), Some(TokenDelivery::Body));
        assert_eq!(with(Some(b"COOKIE")).ok(), Some(TokenDelivery::Cookie));
        for refused in [&b"cookies"[..], b"", b"Cookie, body", b"\xff"] {
            let err = with(Some(refused)).expect_err("refused");
            assert_eq!(err.status(), 422, "{refused:?}");
            assert_eq!(err.code(), "validation_failed");
        }
    }

    #[test]
    fn a_cookie_sent_twice_is_refused() {
        // Cookie tossing: a sibling subdomain plants its own cookie of the same name, with a
        // longer path so the browser sends it first. Twice, in one header or in two, is refused.
        for headers in [
            &["__Secure-refresh_token=planted; __Secure-refresh_token=ours"][..],
            &[
                "__Secure-refresh_token=planted",
                "__Secure-refresh_token=ours",
            ][..],
        ] {
            let mut builder = http::Request::builder();
            for header in headers {
                builder = builder.header("cookie", *header);
            }
            let req = builder.body(Body::Empty).expect("request");
            assert!(matches!(
                cookie(&req, REFRESH_COOKIE),
                Err(ApiError::InvalidToken)
            ));
        }
    }

    #[test]
    fn origin_must_match_exactly() {
        // CS-02: exact match, not prefix or suffix.
        let allowed = ["https://app.example.com".to_owned()].into_iter().collect();
        let post = |origin: Option<&str>| {
            let mut b = http::Request::builder().method("POST");
            if let Some(o) = origin {
                b = b.header("origin", o);
            }
            b.body(Body::Empty).expect("request")
        };
        assert!(check_origin(&post(Some("https://app.example.com")), &allowed, true).is_ok());
        assert!(
            check_origin(
                &post(Some("https://app.example.com.evil.tld")),
                &allowed,
                true
            )
            .is_err()
        );
        assert!(check_origin(&post(None), &allowed, true).is_err());
        assert!(check_origin(&post(None), &allowed, false).is_ok());
        assert!(check_origin(&post(Some("https://evil.example")), &allowed, false).is_err());
    }
}
