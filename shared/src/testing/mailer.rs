//! A mailer that keeps what it is asked to send, for handler tests.

use crate::mail::{Mail, MailError, Mailer, SendFuture};

/// A mailer that keeps what it is asked to send, for handler tests; it can be told to fail.
#[derive(Default)]
pub struct MemoryMailer {
    pub sent: std::sync::Mutex<Vec<Mail>>,
    pub fail: std::sync::atomic::AtomicBool,
}

impl MemoryMailer {
    pub fn sent(&self) -> Vec<Mail> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Mailer for MemoryMailer {
    fn send<'a>(&'a self, mail: &'a Mail) -> SendFuture<'a> {
        Box::pin(async move {
            if self.fail.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(MailError("refused".into()));
            }
            self.sent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(mail.clone());
            Ok(())
        })
    }
}
