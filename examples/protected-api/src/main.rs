//! GET /whoami on "your other API": the caller, as API Gateway's JWT authorizer verified them.
//!
//! API Gateway checks the auth service's access token (RS256 signature against the keys of its
//! OpenID discovery document, `iss`, `aud`, `exp`, `nbf` and the route's scope) before this
//! function runs, and hands over the verified claims in the request context (payload format 2.0:
//! `requestContext.authorizer.jwt`). The function trusts only those claims, never the
//! `Authorization` header: without them it was not called through the authorizer, and answers
//! 401.

use std::collections::HashMap;

use lambda_http::http::{StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Error, Request, RequestExt, Response, run, service_fn};
use serde_json::{Value, json};

const JSON: &str = "application/json";
const PROBLEM_JSON: &str = "application/problem+json";

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(whoami)).await
}

/// 200 with the verified `sub`, `scope` and every verified claim, or a 401 problem.
async fn whoami(req: Request) -> Result<Response<Body>, Error> {
    let Some(claims) = verified_claims(&req) else {
        let problem = json!({"type": "about:blank", "title": "Unauthorized", "status": 401,
            "code": "invalid_token"});
        return respond(StatusCode::UNAUTHORIZED, PROBLEM_JSON, &problem);
    };
    let body = json!({"sub": claims.get("sub"), "scope": claims.get("scope"), "claims": claims});
    respond(StatusCode::OK, JSON, &body)
}

/// The claims the JWT authorizer verified (API Gateway passes each value as a string), when
/// there are any and they name a subject.
fn verified_claims(req: &Request) -> Option<&HashMap<String, String>> {
    let jwt = match req.request_context_ref()? {
        RequestContext::ApiGatewayV2(ctx) => ctx.authorizer.as_ref()?.jwt.as_ref()?,
        _ => return None,
    };
    jwt.claims.contains_key("sub").then_some(&jwt.claims)
}

fn respond(status: StatusCode, content_type: &str, body: &Value) -> Result<Response<Body>, Error> {
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store");
    if status == StatusCode::UNAUTHORIZED {
        builder = builder.header(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"");
    }
    Ok(builder.body(Body::from(body.to_string()))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample event of `cargo lambda invoke` and `sam local invoke`.
    const EVENT: &str = include_str!("../events/whoami.json");

    async fn call(req: Request) -> (StatusCode, String, Value) {
        let response = whoami(req).await.expect("a response");
        let content_type = &response.headers()[header::CONTENT_TYPE];
        let content_type = content_type.to_str().expect("ASCII").to_owned();
        let body = serde_json::from_slice(response.body()).expect("a JSON body");
        (response.status(), content_type, body)
    }

    #[tokio::test]
    async fn answers_the_verified_claims() {
        let req = lambda_http::request::from_str(EVENT).expect("a payload 2.0 event");
        let (status, content_type, body) = call(req).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "application/json");
        assert_eq!(body["sub"], "96ac2f7a-3c1e-4b7d-9f0a-5e2d8c4b1a70");
        assert_eq!(body["scope"], "api");
        assert_eq!(body["claims"]["token_use"], "access");
        assert_eq!(body["claims"]["aud"], "auth");
    }

    #[tokio::test]
    async fn without_verified_claims_answers_401() {
        // The same request, Authorization header included, without the authorizer's context.
        let mut event: Value = serde_json::from_str(EVENT).expect("JSON");
        let context = event["requestContext"].as_object_mut().expect("an object");
        context.remove("authorizer");
        let bare = lambda_http::request::from_str(&event.to_string()).expect("an event");
        for req in [bare, Request::new(Body::Empty)] {
            let (status, content_type, body) = call(req).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert_eq!(content_type, "application/problem+json");
            let problem = json!({"type": "about:blank", "title": "Unauthorized", "status": 401,
                "code": "invalid_token"});
            assert_eq!(body, problem);
        }
    }
}
