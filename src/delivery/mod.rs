//! Delivery of queued messages: the loop that drains the outbox and the
//! transports it hands messages to, chosen in configuration. The file
//! transports are the development default: a person reads what was sent.
//! The memory ones keep messages in the process for tests. The others talk
//! to real SMTP servers and SMS gateways, and classify each failure as
//! transient (retry) or permanent (dead-letter at once).
mod dispatcher;
mod email;
mod memory;
mod providers;
mod sms;
mod webhook;

use entity::states::ErrorClass;

pub use dispatcher::{DispatchReport, Dispatcher};
pub use email::EmailSender;
pub use memory::{MemoryOutbox, SentMessage};
pub use providers::SmsProviders;
pub use sms::SmsTransport;
pub use webhook::WebhookTransport;

/// What the dispatcher hands a transport.
pub struct OutgoingMessage<'a> {
    pub id: uuid::Uuid,
    pub recipient: &'a str,
    pub subject: Option<&'a str>,
    pub body: &'a str,
    pub html_body: Option<&'a str>,
}

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth retrying: timeouts, refused connections, 5xx from a gateway,
    /// 4xx replies from an SMTP server.
    #[error("{0}")]
    Transient(String),
    /// Retrying cannot help: 4xx from a gateway, 5xx SMTP replies, a
    /// recipient that is not an address.
    #[error("{0}")]
    Permanent(String),
}

impl SendError {
    /// A request to `who` (`gateway`, `endpoint`) that got no answer:
    /// transient. reqwest errors print the URL, which may carry credentials
    /// or be a host's; only the kind is kept.
    fn unanswered(who: &str, error: &reqwest::Error) -> Self {
        let kind = if error.is_timeout() {
            "timed out"
        } else {
            "failed"
        };
        let mut text = error.to_string();
        if let Some(url) = error.url() {
            text = text.replace(url.as_str(), &format!("<{who}>"));
        }
        SendError::Transient(format!("{who} request {kind}: {text}"))
    }

    /// A non-2xx answer from `who`: 408, 429 and 5xx are transient, other
    /// 4xx permanent. The error keeps the start of the body.
    fn from_answer(who: &str, status: reqwest::StatusCode, body: &str) -> Self {
        use reqwest::StatusCode;
        let excerpt: String = body.chars().take(200).collect();
        let error = format!("{who} answered {status}: {excerpt}");
        if status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
        {
            SendError::Transient(error)
        } else {
            SendError::Permanent(error)
        }
    }

    pub fn class(&self) -> ErrorClass {
        match self {
            SendError::Transient(_) => ErrorClass::Transient,
            SendError::Permanent(_) => ErrorClass::Permanent,
        }
    }
}
