//! Mail through SES v2: the reset code and the notices that follow a password change. A
//! failure to send is the caller's to log; it never changes an answer (SES-02).

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};

/// A message to one recipient, as plain text and HTML.
#[derive(Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl fmt::Debug for Mail {
    // The body may hold a reset code: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mail")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl Mail {
    /// The code that proves `to` reaches its owner. A code and no link: mail scanners open
    /// links before people do, and nothing here verifies on a GET.
    pub fn verification_code(to: &str, code: &str, valid_hours: u64) -> Self {
        let text = format!(
            "To confirm that {to} is your address, enter this code:\n\n\
             {code}\n\n\
             It is valid for {valid_hours} hours and works once. If you did not ask for this, \
             ignore this message.\n"
        );
        let html = format!(
            "<p>To confirm that {} is your address, enter this code:</p>\
             <p><strong>{}</strong></p>\
             <p>It is valid for {valid_hours} hours and works once. If you did not ask for \
             this, ignore this message.</p>",
            escape(to),
            escape(code)
        );
        Self {
            to: to.to_owned(),
            subject: "Your email verification code".to_owned(),
            text,
            html,
        }
    }

    /// The reset-code message. `link_template`, from configuration and never from the request
    /// (FP-08), may hold `{code}` and `{email}`.
    pub fn reset_code(
        to: &str,
        code: &str,
        valid_minutes: u64,
        link_template: Option<&str>,
    ) -> Self {
        let link = link_template.map(|t| {
            t.replace("{code}", &percent_encode(code))
                .replace("{email}", &percent_encode(to))
        });
        let mut text = format!(
            "Someone asked to reset the password of the account for {to}.\n\n\
             Your reset code is: {code}\n\n\
             It is valid for {valid_minutes} minutes and works once.\n"
        );
        let mut html = format!(
            "<p>Someone asked to reset the password of the account for {}.</p>\
             <p>Your reset code is: <strong>{}</strong></p>\
             <p>It is valid for {valid_minutes} minutes and works once.</p>",
            escape(to),
            escape(code)
        );
        if let Some(link) = &link {
            text.push_str(&format!("Or open this link: {link}\n"));
            html.push_str(&format!("<p><a href=\"{0}\">{0}</a></p>", escape(link)));
        }
        text.push_str(
            "\nIf you did not ask for this, ignore this message: your password has not changed.\n",
        );
        html.push_str("<p>If you did not ask for this, ignore this message: your password has not changed.</p>");
        Self {
            to: to.to_owned(),
            subject: "Your password reset code".into(),
            text,
            html,
        }
    }

    /// The notice that a password was changed or reset (PC-02, FP-07). It holds no secret.
    pub fn password_changed(to: &str) -> Self {
        Self::notice(
            to,
            "Your password was changed",
            &[
                "The password of your account was just changed, and every other session was signed out.",
                "If this was not you, reset your password now and review your account.",
            ],
            None,
        )
    }

    /// The notice that two-step sign-in was turned on, with the code that turns it off again
    /// from the mailbox (MF-07): whoever turned it on knew the password, and the mailbox must
    /// always be a way back in.
    pub fn two_step_on(to: &str, undo_code: &str, days: u64) -> Self {
        let help = format!(
            "If this was not you, someone knows your password. Turn two-step sign-in off and end every session with this code (it works once, for {days} days), then reset your password:"
        );
        Self::notice(
            to,
            "Two-step sign-in is on",
            &[
                "Two-step sign-in was just turned on for your account: signing in now also asks for a code from your authenticator app (or one of your recovery codes).",
                &help,
            ],
            Some(undo_code),
        )
    }

    /// The notice that two-step sign-in was turned off.
    pub fn two_step_off(to: &str) -> Self {
        Self::notice(
            to,
            "Two-step sign-in is off",
            &[
                "Two-step sign-in was just turned off for your account: signing in now asks for the password only.",
                "If this was not you, reset your password now and review your account.",
            ],
            None,
        )
    }

    /// The notice to the old address that the account's email was changed (RG-04). It shows the
    /// new address only in part.
    pub fn email_changed(to: &str, new_email: &str) -> Self {
        let masked = mask_address(new_email);
        let line = format!(
            "Someone signed in to your account asked to change its email address to {masked}. \
             It changes once the code mailed there is entered; until then this address stays."
        );
        Self::notice(
            to,
            "Your email address is about to change",
            &[
                &line,
                "If this was not you, sign in with your password now and change your password.",
            ],
            None,
        )
    }

    /// A notice: its paragraphs, and a code last (in bold in the HTML part).
    fn notice(to: &str, subject: &str, paragraphs: &[&str], code: Option<&str>) -> Self {
        let mut text = paragraphs.join("\n\n");
        let mut html: String = paragraphs
            .iter()
            .map(|paragraph| format!("<p>{}</p>", escape(paragraph)))
            .collect();
        if let Some(code) = code {
            text.push_str(&format!("\n\n{code}"));
            html.push_str(&format!("<p><strong>{}</strong></p>", escape(code)));
        }
        text.push('\n');
        Self {
            to: to.to_owned(),
            subject: subject.to_owned(),
            text,
            html,
        }
    }
}

/// `alice@example.com` -> `a***@example.com`.
fn mask_address(address: &str) -> String {
    let (local, domain) = address.split_once('@').unwrap_or((address, ""));
    let first: String = local.chars().take(1).collect();
    format!("{first}***@{domain}")
}

#[derive(Debug, thiserror::Error)]
#[error("mail not sent: {0}")]
pub struct MailError(pub String);

pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), MailError>> + Send + 'a>>;

pub trait Mailer: Send + Sync {
    fn send<'a>(&'a self, mail: &'a Mail) -> SendFuture<'a>;
}

/// Sends through SES v2 from the configured, verified sender, through the deployment's
/// configuration set (which suppresses addresses that bounced or complained).
pub struct SesMailer {
    client: Client,
    from: String,
    configuration_set: Option<String>,
}

impl SesMailer {
    pub fn new(client: Client, from: impl Into<String>, configuration_set: Option<String>) -> Self {
        Self {
            client,
            from: from.into(),
            configuration_set,
        }
    }
}

impl Mailer for SesMailer {
    fn send<'a>(&'a self, mail: &'a Mail) -> SendFuture<'a> {
        Box::pin(async move {
            let content = |text: &str| Content::builder().data(text).charset("UTF-8").build();
            let message = Message::builder()
                .subject(content(&mail.subject).map_err(|e| MailError(e.to_string()))?)
                .body(
                    Body::builder()
                        .text(content(&mail.text).map_err(|e| MailError(e.to_string()))?)
                        .html(content(&mail.html).map_err(|e| MailError(e.to_string()))?)
                        .build(),
                )
                .build();
            self.client
                .send_email()
                .from_email_address(&self.from)
                .set_configuration_set_name(self.configuration_set.clone())
                .destination(Destination::builder().to_addresses(&mail.to).build())
                .content(EmailContent::builder().simple(message).build())
                .send()
                .await
                .map(|_| ())
                // The SDK error names the failure (MessageRejected, throttling); it holds no body.
                .map_err(|err| {
                    MailError(aws_sdk_sesv2::error::DisplayErrorContext(err).to_string())
                })
        })
    }
}

fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reset_mail_carries_the_code_and_the_configured_link() {
        let mail = Mail::reset_code(
            "a+b@example.com",
            "01234567",
            10,
            Some("https://app.example.com/reset?code={code}&email={email}"),
        );
        assert_eq!(mail.to, "a+b@example.com");
        assert!(mail.text.contains("01234567") && mail.html.contains("01234567"));
        assert!(
            mail.text
                .contains("https://app.example.com/reset?code=01234567&email=a%2Bb%40example.com")
        );
        assert!(mail.html.contains(
            "href=\"https://app.example.com/reset?code=01234567&amp;email=a%2Bb%40example.com\""
        ));
        assert!(mail.text.contains("10 minutes"));
        assert!(
            !format!("{mail:?}").contains("01234567"),
            "Debug hides the code"
        );
        let plain = Mail::reset_code("a@example.com", "01234567", 10, None);
        assert!(!plain.text.contains("http"));
    }

    #[test]
    fn the_verification_mail_carries_the_code_and_no_link() {
        let mail = Mail::verification_code("a<b@example.com", "76543210", 24);
        assert_eq!(mail.subject, "Your email verification code");
        assert!(mail.text.contains("76543210") && mail.html.contains("<strong>76543210</strong>"));
        assert!(mail.text.contains("24 hours"));
        assert!(mail.html.contains("a&lt;b@example.com"));
        assert!(!mail.text.contains("http") && !mail.html.contains("href"));
        assert!(!format!("{mail:?}").contains("76543210"));
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
