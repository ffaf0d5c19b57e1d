//! Faults injected under the AWS SDK, for the fault-injection tests: an HTTP client that answers
//! chosen calls itself, the way DynamoDB or SES answer when they throttle, fail, hang or cancel a
//! transaction, and hands every other call to the real client. Everything above it (the SDK's
//! retries and timeouts, the store, the handlers) runs as in production.

use std::sync::{Arc, Mutex, MutexGuard};

use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;

/// What a faulty call gets instead of the service's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// DynamoDB's `ProvisionedThroughputExceededException`; SES's 429 `TooManyRequestsException`.
    Throttled,
    /// A 500 from the service.
    ServerError,
    /// No answer at all: the SDK's attempt timeout has to end the call.
    Timeout,
    /// The connection drops before an answer.
    ConnectionReset,
    /// The call reaches the service and is carried out, then the connection drops before its
    /// answer arrives: the SDK retries a request that has already taken effect. Not in `ALL`:
    /// unlike the others it changes the tables, by design.
    LostAnswer,
    /// A write that loses to a concurrent transaction: `TransactionCanceledException` whose last
    /// part is a `TransactionConflict` (the other parts `None`) for `TransactWriteItems`, and
    /// `TransactionConflictException` for a single-item write.
    TransactionConflict,
}

impl Fault {
    pub const ALL: [Fault; 5] = [
        Fault::Throttled,
        Fault::ServerError,
        Fault::Timeout,
        Fault::ConnectionReset,
        Fault::TransactionConflict,
    ];

    /// Whether this fault can happen to `operation` (a transaction conflict needs a write).
    pub fn applies_to(self, operation: &str) -> bool {
        self != Fault::TransactionConflict
            || matches!(
                operation,
                "TransactWriteItems" | "PutItem" | "UpdateItem" | "DeleteItem"
            )
    }
}

/// Which calls fail, counted from 0 since the fault was armed (retries are calls too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calls {
    /// Call `n` and every call after it: the dependency goes down and stays down.
    From(usize),
    /// Only call `n`: a blip that the SDK's retry should absorb.
    Only(usize),
    /// Every call of this operation (`GetItem`, `TransactWriteItems`, `SendEmail`, …).
    Operation(&'static str),
}

#[derive(Debug, Default)]
struct State {
    armed: Option<(Fault, Calls)>,
    /// The operation of every call since the last `arm`, and whether it was failed.
    calls: Vec<(String, bool)>,
}

/// The faulty HTTP client; clones share one plan. Give it to the SDK with
/// `SdkConfig::to_builder().http_client(faults.clone())`.
#[derive(Debug, Clone)]
pub struct Faults {
    inner: SharedHttpClient,
    state: Arc<Mutex<State>>,
}

impl Default for Faults {
    fn default() -> Self {
        Self::new()
    }
}

impl Faults {
    /// Passes every call through to the SDK's own HTTPS client until a fault is armed.
    pub fn new() -> Self {
        let inner = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
            .build_https();
        Self {
            inner,
            state: Arc::default(),
        }
    }

    /// Fails `calls` with `fault` from now on, and starts counting calls afresh.
    pub fn arm(&self, fault: Fault, calls: Calls) {
        let mut state = self.state();
        state.armed = Some((fault, calls));
        state.calls.clear();
    }

    /// Lets every call through again, and starts counting calls afresh.
    pub fn disarm(&self) {
        let mut state = self.state();
        state.armed = None;
        state.calls.clear();
    }

    /// The operations called since the last `arm` or `disarm`, in order, one per attempt.
    pub fn calls(&self) -> Vec<String> {
        self.state()
            .calls
            .iter()
            .map(|(op, _)| op.clone())
            .collect()
    }

    /// How many calls since the last `arm` were failed.
    pub fn failed(&self) -> usize {
        self.state()
            .calls
            .iter()
            .filter(|(_, failed)| *failed)
            .count()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a call of `operation`; the fault it gets, if any.
    fn next(&self, operation: &str) -> Option<Fault> {
        let mut state = self.state();
        let index = state.calls.len();
        let fault = state.armed.and_then(|(fault, calls)| {
            let hit = match calls {
                Calls::From(n) => index >= n,
                Calls::Only(n) => index == n,
                Calls::Operation(name) => name == operation,
            };
            (hit && fault.applies_to(operation)).then_some(fault)
        });
        state.calls.push((operation.to_owned(), fault.is_some()));
        fault
    }
}

impl HttpClient for Faults {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(FaultyConnector {
            inner: self.inner.http_connector(settings, components),
            faults: self.clone(),
        })
    }
}

#[derive(Debug)]
struct FaultyConnector {
    inner: SharedHttpConnector,
    faults: Faults,
}

impl HttpConnector for FaultyConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let operation = operation(&request);
        match self.faults.next(&operation) {
            None => self.inner.call(request),
            Some(Fault::Timeout) => HttpConnectorFuture::new(std::future::pending()),
            Some(Fault::ConnectionReset) => HttpConnectorFuture::ready(Err(ConnectorError::io(
                "injected: connection reset by peer".into(),
            ))),
            Some(Fault::LostAnswer) => {
                let delivered = self.inner.call(request);
                HttpConnectorFuture::new(async move {
                    let _carried_out = delivered.await;
                    Err(ConnectorError::io(
                        "injected: connection reset after the request was delivered".into(),
                    ))
                })
            }
            Some(fault) => HttpConnectorFuture::ready(Ok(answer(fault, &operation, &request))),
        }
    }
}

/// The operation a request calls: DynamoDB names it in `X-Amz-Target`; SES v2 is REST, and the
/// only call this service makes is `SendEmail`.
fn operation(request: &HttpRequest) -> String {
    if let Some(target) = request.headers().get("x-amz-target") {
        return target.rsplit('.').next().unwrap_or(target).to_owned();
    }
    if request.uri().contains("/v2/email/outbound-emails") {
        return "SendEmail".into();
    }
    request.uri().to_owned()
}

/// The service's error answer for `fault`, in its own protocol.
fn answer(fault: Fault, operation: &str, request: &HttpRequest) -> HttpResponse {
    let dynamo = request.headers().get("x-amz-target").is_some();
    let (status, kind, extra) = match (fault, dynamo) {
        (Fault::Throttled, true) => (400, "ProvisionedThroughputExceededException", None),
        (Fault::Throttled, false) => (429, "TooManyRequestsException", None),
        (Fault::TransactionConflict, true) if operation == "TransactWriteItems" => {
            let parts = transaction_parts(request);
            let reasons: Vec<_> = (0..parts)
                .map(|i| {
                    if i + 1 == parts {
                        serde_json::json!({"Code": "TransactionConflict", "Message": "injected"})
                    } else {
                        serde_json::json!({"Code": "None"})
                    }
                })
                .collect();
            (400, "TransactionCanceledException", Some(reasons))
        }
        (Fault::TransactionConflict, _) => (400, "TransactionConflictException", None),
        _ => (500, "InternalServerError", None),
    };
    let mut body = serde_json::json!({"message": "injected fault"});
    if dynamo {
        body["__type"] = format!("com.amazonaws.dynamodb.v20120810#{kind}").into();
    }
    if let Some(reasons) = extra {
        body["CancellationReasons"] = reasons.into();
    }
    let status = StatusCode::try_from(status).unwrap_or_else(|_| unreachable!("a valid status"));
    let mut response = HttpResponse::new(status, SdkBody::from(body.to_string()));
    let content_type = if dynamo {
        "application/x-amz-json-1.0"
    } else {
        "application/json"
    };
    response.headers_mut().insert("content-type", content_type);
    response.headers_mut().insert("x-amzn-errortype", kind);
    response
        .headers_mut()
        .insert("x-amzn-requestid", "injected-fault");
    response
}

/// How many actions a `TransactWriteItems` request holds.
fn transaction_parts(request: &HttpRequest) -> usize {
    request
        .body()
        .bytes()
        .and_then(|raw| serde_json::from_slice::<serde_json::Value>(raw).ok())
        .and_then(|body| body["TransactItems"].as_array().map(Vec::len))
        .unwrap_or(1)
        .max(1)
}
