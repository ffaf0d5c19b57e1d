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

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_extension::{Extension, LambdaEvent, NextEvent, RegisteredExtension, Service};
use lambda_http::{Error, Request};
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
    let outbox = Arc::new(Outbox::new(Arc::clone(&deps.mailer)));
    let (answered, answers) = unbounded_channel();
    let extension = match register(Arc::clone(&outbox), answers).await {
        Ok(extension) => Some(extension),
        Err(err) => {
            tracing::warn!(event = "outbox_unavailable", error = %err, "mail is sent inline");
            None
        }
    };
    let deps = match extension {
        Some(_) => deps.with_mailer(outbox),
        None => deps,
    };
    // One set of dependencies for the life of the instance, as the handlers' futures need.
    let deps: &'static Deps<S> = Box::leak(Box::new(deps));
    let service = lambda_http::service_fn(move |req| {
        let answer = handler(deps, req);
        let answered = Answered(answered.clone());
        async move {
            let response = answer.await;
            drop(answered);
            response
        }
    });
    match extension {
        Some(extension) => {
            tokio::try_join!(lambda_http::run(service), extension.run())?;
            Ok(())
        }
        None => lambda_http::run(service).await,
    }
}

/// Tells the extension that the handler has answered, when dropped: also when it panics.
struct Answered(UnboundedSender<()>);

impl Drop for Answered {
    fn drop(&mut self) {
        // The receiver lives as long as the extension, which lives as long as the process.
        let _ = self.0.send(());
    }
}

/// Registers the extension that holds each invocation open until its mail has been sent.
async fn register(
    outbox: Arc<Outbox>,
    answers: UnboundedReceiver<()>,
) -> Result<
    RegisteredExtension<
        impl Service<
            LambdaEvent,
            Response = (),
            Error = Infallible,
            Future = impl Future<Output = Result<(), Infallible>> + Send,
        > + Send,
    >,
    Error,
> {
    let answers = Arc::new(tokio::sync::Mutex::new(answers));
    let processor = lambda_extension::service_fn(move |event: LambdaEvent| {
        let outbox = Arc::clone(&outbox);
        let answers = Arc::clone(&answers);
        async move {
            if let NextEvent::Invoke(invoke) = event.next {
                // Lambda always gives a deadline in the future; `cargo lambda watch` gives
                // none (0), and nothing freezes there, so there is nothing to wait for.
                let Some(left) = remaining(invoke.deadline_ms, SystemTime::now()) else {
                    return Ok(());
                };
                let finished = async {
                    answers.lock().await.recv().await;
                    outbox.flush().await;
                };
                if tokio::time::timeout(left, finished).await.is_err() {
                    tracing::warn!(
                        event = "outbox_deadline",
                        "mail still pending at the deadline"
                    );
                }
            }
            Ok::<(), Infallible>(())
        }
    });
    Extension::new()
        .with_extension_name("outbox")
        .with_events(&["INVOKE"])
        .with_events_processor(processor)
        .register()
        .await
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
