//! Mail sent after the answer. A handler hands its mail to the [`Outbox`] and answers at once;
//! the send runs beside the answer instead of before it. So a slow SES call no longer stretches
//! the answers that send mail (forgot-password's for existing accounts above all, which must
//! look like every other answer) and an SES outage costs the client nothing.
//!
//! Lambda freezes an execution environment once the runtime and every extension have asked for
//! the next event, and a frozen send may never finish. [`serve`] therefore registers an
//! internal extension for `INVOKE` events: for each invocation it waits until the handler has
//! answered, then until every send the handler started has finished, and only then asks for
//! the next event. If the extension cannot be registered, mail is sent inside the request as
//! before: a slower answer, never a lost mail.
//!
//! The extension speaks the Extensions API's two calls (register, next event) through the
//! runtime's own API client: the `lambda-extension` crate does the same with a logs and
//! telemetry server besides, which added about 0.5 MiB to each mailing function.

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::BodyExt;
use lambda_http::http::Method;
use lambda_http::{Error, Request};
use lambda_runtime_api_client::body::Body;
use lambda_runtime_api_client::{PooledClient, build_request};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinSet;

use crate::handlers::Deps;
use crate::http::Response;
use crate::mail::{Mail, Mailer, SendFuture};

/// A [`Mailer`] that starts each send in the background and returns at once. A send that fails
/// is logged (SES-02), as an inline one would be.
pub struct Outbox {
    mailer: Arc<dyn Mailer>,
    pending: Mutex<JoinSet<()>>,
}

impl Outbox {
    pub fn new(mailer: Arc<dyn Mailer>) -> Self {
        Self {
            mailer,
            pending: Mutex::new(JoinSet::new()),
        }
    }

    /// Waits until every send started so far has finished.
    pub async fn flush(&self) {
        let mut pending =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        while pending.join_next().await.is_some() {}
    }
}

impl Mailer for Outbox {
    fn send<'a>(&'a self, mail: &'a Mail) -> SendFuture<'a> {
        let mailer = Arc::clone(&self.mailer);
        let mail = mail.clone();
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .spawn(async move {
                if let Err(err) = mailer.send(&mail).await {
                    tracing::error!(event = "mail_failed", error = %err);
                }
            });
        Box::pin(async { Ok(()) })
    }
}

/// Runs a mail-sending function: `handler` answers each request with `deps`, whose mail then
/// goes through an [`Outbox`] held open by an internal extension (see the module's notes).
pub async fn serve<S, H, F>(deps: Deps<S>, handler: H) -> Result<(), Error>
where
    S: Send + Sync + 'static,
    H: Fn(&'static Deps<S>, Request) -> F,
    F: Future<Output = Result<Response, Infallible>> + Send + 'static,
{
    let extension = match Extension::register("outbox").await {
        Ok(extension) => Some(extension),
        Err(err) => {
            tracing::warn!(event = "outbox_unavailable", error = %err, "mail is sent inline");
            None
        }
    };
    let Some(extension) = extension else {
        let deps: &'static Deps<S> = Box::leak(Box::new(deps));
        return lambda_http::run(lambda_http::service_fn(move |req| handler(deps, req))).await;
    };
    let outbox = Arc::new(Outbox::new(Arc::clone(&deps.mailer)));
    // One set of dependencies for the life of the instance, as the handlers' futures need.
    let deps: &'static Deps<S> = Box::leak(Box::new(deps.with_mailer(outbox.clone())));
    let (answered, answers) = unbounded_channel();
    let service = lambda_http::service_fn(move |req| {
        let answer = handler(deps, req);
        let answered = Answered(answered.clone());
        async move {
            let response = answer.await;
            drop(answered);
            response
        }
    });
    tokio::try_join!(lambda_http::run(service), extension.hold(outbox, answers))?;
    Ok(())
}

/// Tells the extension that the handler has answered, when dropped: also when it panics.
struct Answered(UnboundedSender<()>);

impl Drop for Answered {
    fn drop(&mut self) {
        // The receiver lives as long as the extension, which lives as long as the process.
        let _ = self.0.send(());
    }
}

/// An internal extension registered with the Lambda Extensions API for `INVOKE` events.
struct Extension {
    client: PooledClient,
    id: String,
}

const EXTENSIONS_API: &str = "/2020-01-01/extension";

impl Extension {
    /// Registers, as Lambda requires, before the runtime asks for its first event.
    async fn register(name: &str) -> Result<Self, Error> {
        let client = PooledClient::builder().build();
        let request = build_request()
            .method(Method::POST)
            .uri(format!("{EXTENSIONS_API}/register"))
            .header("Lambda-Extension-Name", name)
            .header("Content-Type", "application/json")
            .body(Body::from(r#"{"events":["INVOKE"]}"#))?;
        let response = client.call(request).await?;
        if !response.status().is_success() {
            return Err(format!("the Extensions API answered {}", response.status()).into());
        }
        let id = response
            .headers()
            .get("Lambda-Extension-Identifier")
            .and_then(|id| id.to_str().ok())
            .ok_or("the Extensions API gave no identifier")?
            .to_owned();
        Ok(Self { client, id })
    }

    /// Asks for the next event (the environment may freeze from then on) and returns the
    /// deadline of the invocation it announces, in milliseconds since the epoch.
    async fn next_deadline_ms(&self) -> Result<u64, Error> {
        let request = build_request()
            .method(Method::GET)
            .uri(format!("{EXTENSIONS_API}/event/next"))
            .header("Lambda-Extension-Identifier", &self.id)
            .body(Body::empty())?;
        let body = self.client.call(request).await?.collect().await?.to_bytes();
        let event: NextEvent = serde_json::from_slice(&body)?;
        Ok(event.deadline_ms)
    }

    /// For each invocation: waits until the handler has answered and its mail has gone out,
    /// and only then asks for the next event.
    async fn hold(
        self,
        outbox: Arc<Outbox>,
        mut answers: UnboundedReceiver<()>,
    ) -> Result<(), Error> {
        loop {
            let deadline_ms = self.next_deadline_ms().await?;
            // Lambda always gives a deadline in the future; `cargo lambda watch` gives none
            // (0), and nothing freezes there, so there is nothing to wait for.
            let Some(left) = remaining(deadline_ms, SystemTime::now()) else {
                continue;
            };
            let finished = async {
                answers.recv().await;
                outbox.flush().await;
            };
            if tokio::time::timeout(left, finished).await.is_err() {
                tracing::warn!(
                    event = "outbox_deadline",
                    "mail still pending at the deadline"
                );
            }
        }
    }
}

/// The part of an Extensions API event this extension reads.
#[derive(serde::Deserialize)]
struct NextEvent {
    #[serde(rename = "deadlineMs", default)]
    deadline_ms: u64,
}

/// The time left until `deadline_ms` (milliseconds since the epoch); none once it has passed.
fn remaining(deadline_ms: u64, now: SystemTime) -> Option<Duration> {
    let now = now.duration_since(UNIX_EPOCH).ok()?;
    Duration::from_millis(deadline_ms)
        .checked_sub(now)
        .filter(|left| !left.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryMailer;
    use std::sync::atomic::Ordering;

    fn slow(delay_ms: u64) -> Arc<MemoryMailer> {
        let mailer = Arc::new(MemoryMailer::default());
        mailer.delay_ms.store(delay_ms, Ordering::Relaxed);
        mailer
    }

    fn mail() -> Mail {
        Mail::password_changed("alice@example.com")
    }

    #[tokio::test(start_paused = true)]
    async fn a_send_returns_at_once_and_flush_waits_for_it() {
        let mailer = slow(5_000);
        let outbox = Outbox::new(mailer.clone());
        let started = tokio::time::Instant::now();
        outbox.send(&mail()).await.expect("accepted");
        outbox.send(&mail()).await.expect("accepted");
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert!(mailer.sent().is_empty());
        outbox.flush().await;
        assert_eq!(mailer.sent(), vec![mail(), mail()]);
        // The two sends ran side by side.
        assert_eq!(started.elapsed(), Duration::from_millis(5_000));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_send_is_not_the_callers_failure_and_does_not_stop_the_flush() {
        let mailer = slow(10);
        mailer.fail.store(true, Ordering::Relaxed);
        let outbox = Outbox::new(mailer.clone());
        assert!(outbox.send(&mail()).await.is_ok());
        outbox.flush().await;
        mailer.fail.store(false, Ordering::Relaxed);
        outbox.send(&mail()).await.expect("accepted");
        outbox.flush().await;
        assert_eq!(mailer.sent(), vec![mail()]);
    }

    #[test]
    fn the_time_left_before_the_deadline() {
        let now = UNIX_EPOCH + Duration::from_millis(10_000);
        assert_eq!(remaining(12_500, now), Some(Duration::from_millis(2_500)));
        assert_eq!(remaining(9_000, now), None);
        assert_eq!(remaining(0, now), None, "no deadline at all");
    }
}
