//! Notification emails (the grant confirmation to the granter): sent through SMTP with lettre
//! when `THINGLINE_SMTP_URL` is set, kept in the app's outbox (listable in the panel) otherwise.
//! Sending happens off the request: a mail that SMTP refuses is logged and kept in the outbox, so
//! it is never lost silently.

use lettre::Address;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use thingline_core::email::normalize_email;
use thingline_core::model::OutboxMail;
use thingline_core::time::now_ms;
use thingline_core::{Error, Result};

use super::Platform;

/// The configured SMTP relay.
#[derive(Clone)]
pub(crate) struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Platform {
    /// Configures email delivery: with an SMTP URL (`smtp://host:port`, `smtp://host:port?tls=required`,
    /// `smtps://user:pass@host`) mails go out through it; without, they go to the outbox.
    pub fn set_mail_settings(&self, smtp_url: Option<&str>, from: &str) -> Result<()> {
        let mailer = match smtp_url.map(str::trim).filter(|u| !u.is_empty()) {
            None => None,
            Some(url) => {
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| Error::bad_request(format!("THINGLINE_SMTP_URL is not a valid SMTP URL: {e}")))?
                    .build();
                let from: Mailbox = from
                    .parse()
                    .map_err(|e| Error::bad_request(format!("THINGLINE_SMTP_FROM is not a valid address: {e}")))?;
                Some(Mailer { transport, from })
            }
        };
        *self.app_api.mail.write() = mailer;
        Ok(())
    }

    /// Sends a notification (or stores it in the app's outbox when SMTP is not configured).
    pub(crate) async fn notify(&self, app_id: &str, to: &str, subject: &str, body: &str) -> Result<()> {
        let mailer = self.app_api.mail.read().clone();
        let Some(mailer) = mailer else {
            self.store.add_outbox_mail(app_id, to, subject, body, now_ms()).await?;
            return Ok(());
        };
        let store = std::sync::Arc::clone(&self.store);
        let (app_id, to, subject, body) = (app_id.to_owned(), to.to_owned(), subject.to_owned(), body.to_owned());
        tokio::spawn(async move {
            let sent = match build_message(&mailer.from, &to, &subject, &body) {
                Ok(msg) => mailer.transport.send(msg).await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            if let Err(e) = sent {
                tracing::warn!(error = %e, %to, "sending a notification email failed; kept in the outbox");
                if let Err(e) = store.add_outbox_mail(&app_id, &to, &subject, &body, now_ms()).await {
                    tracing::warn!(error = %e.public_message(), "storing the email in the outbox failed");
                }
            }
        });
        Ok(())
    }

    /// The outbox of an app, newest first.
    pub async fn outbox(&self, app_id: &str, limit: u32) -> Result<Vec<OutboxMail>> {
        self.store.outbox_of_app(app_id, limit).await
    }
}

/// The mail to send. No unchecked text reaches a header: the recipient is an address that passes
/// the account email rule again (never parsed as a `Name <addr>` mailbox), and the subject may not
/// hold a control character. The body is free text, encoded by lettre.
fn build_message(from: &Mailbox, to: &str, subject: &str, body: &str) -> std::result::Result<Message, String> {
    let to = normalize_email(to).map_err(|e| format!("recipient {to:?}: {}", e.public_message()))?;
    let (user, domain) = to.split_once('@').ok_or_else(|| format!("recipient {to:?}: no @"))?;
    let to = Mailbox::new(None, Address::new(user, domain).map_err(|e| format!("recipient {to:?}: {e}"))?);
    if subject.chars().any(char::is_control) {
        return Err(format!("subject {subject:?} holds a control character"));
    }
    Message::builder().from(from.clone()).to(to).subject(subject).body(body.to_owned()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from() -> Mailbox {
        "Thingline <thingline@localhost>".parse().expect("from")
    }

    fn headers(msg: &Message) -> String {
        let raw = String::from_utf8(msg.formatted()).expect("utf8");
        raw.split("\r\n\r\n").next().expect("headers").to_owned()
    }

    #[test]
    fn the_recipient_is_only_ever_a_checked_address() {
        let msg = build_message(&from(), " Friend@Example.com ", "You shared resources", "hello").expect("built");
        let h = headers(&msg);
        assert!(h.contains("To: friend@example.com\r\n"), "{h}");
        for to in [
            "a\r\nBcc: x@evil.com",
            "victim@example.com\r\nBcc: x@evil.com",
            "victim@example.com\nBcc: x@evil.com",
            "Evil <x@evil.com>",
            "victim@example.com, x@evil.com",
            "\"a\r\nb\"@example.com",
            "",
        ] {
            assert!(build_message(&from(), to, "s", "b").is_err(), "{to:?}");
        }
    }

    #[test]
    fn the_subject_holds_no_line_break_and_the_body_stays_in_the_body() {
        assert!(build_message(&from(), "a@example.com", "hi\r\nBcc: x@evil.com", "b").is_err());
        let body = "You shared resources with friend@example.com:\nBcc: x@evil.com\r\n\r\n.\r\nMAIL FROM:<x>\n";
        let msg = build_message(&from(), "a@example.com", "You shared resources", body).expect("built");
        let h = headers(&msg);
        assert!(!h.to_ascii_lowercase().contains("bcc"), "{h}");
        assert!(!h.contains("MAIL FROM"), "{h}");
    }
}
