//! A mailer that keeps what it is asked to send, for handler tests.

use crate::mail::{Mail, MailError, Mailer, SendFuture};

/// A mailer that keeps what it is asked to send, for handler tests; it can be told to fail.
#[derive(Default)]
pub struct MemoryMailer {
    pub sent: std::sync::Mutex<Vec<Mail>>,
    pub fail: std::sync::atomic::AtomicBool,
    /// How long (on tokio's clock) each send takes, as a slow mail server's would.
    pub delay_ms: std::sync::atomic::AtomicU64,
}

impl MemoryMailer {
    pub fn sent(&self) -> Vec<Mail> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The code (8 digits, in bold) of the newest mail to `to` that carries one.
    pub fn code_sent_to(&self, to: &str) -> Option<String> {
        self.sent()
            .into_iter()
            .rev()
            .filter(|m| m.to == to)
            .find_map(|m| {
                let (_, after) = m.html.split_once("<strong>")?;
                let code: String = after.chars().take_while(char::is_ascii_digit).collect();
                (code.len() == 8).then_some(code)
            })
    }

    /// What was sent but the verification codes that every registration mails.
    pub fn sent_but_verification(&self) -> Vec<Mail> {
        let mut sent = self.sent();
        sent.retain(|mail| mail.subject != "Your email verification code");
        sent
    }
}

impl Mailer for MemoryMailer {
    fn send<'a>(&'a self, mail: &'a Mail) -> SendFuture<'a> {
        Box::pin(async move {
            let delay = self.delay_ms.load(std::sync::atomic::Ordering::Relaxed);
            if delay > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            }
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
