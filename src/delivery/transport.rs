//! Transports. The development ones write files a person (or a test) can
//! read; real SMTP and SMS gateways are further variants of these enums.
use std::path::PathBuf;

use anyhow::Context;
use lettre::{
    AsyncFileTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, header::ContentType},
};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

/// What the dispatcher hands a transport.
pub struct OutgoingMessage<'a> {
    pub id: uuid::Uuid,
    pub recipient: &'a str,
    pub subject: Option<&'a str>,
    pub body: &'a str,
}

/// Why a send failed. Permanent failures are not retried.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("transient: {0}")]
    Transient(String),
    #[error("permanent: {0}")]
    Permanent(String),
}

pub enum EmailTransport {
    /// Writes each email as `<message id>.eml` into a directory.
    File(AsyncFileTransport<Tokio1Executor>),
}

impl EmailTransport {
    pub fn file(dir: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("Failed to create outbox directory {}", dir.display()))?;
        Ok(Self::File(AsyncFileTransport::new(dir)))
    }

    /// Returns the provider's message id.
    pub async fn send(
        &self,
        from: &Mailbox,
        message: &OutgoingMessage<'_>,
    ) -> Result<String, SendError> {
        let to: Mailbox = message
            .recipient
            .parse()
            .map_err(|e| SendError::Permanent(format!("invalid recipient: {e}")))?;
        let email = Message::builder()
            .from(from.clone())
            .to(to)
            .subject(message.subject.unwrap_or_default())
            .header(ContentType::TEXT_PLAIN)
            .body(message.body.to_owned())
            .map_err(|e| SendError::Permanent(format!("cannot build email: {e}")))?;
        match self {
            EmailTransport::File(transport) => transport
                .send(email)
                .await
                .map_err(|e| SendError::Transient(format!("cannot write email file: {e}"))),
        }
    }
}

pub enum SmsTransport {
    /// Appends one JSON object per SMS to a file.
    JsonLines(PathBuf),
}

#[derive(Serialize)]
struct SmsLine<'a> {
    id: String,
    to: &'a str,
    text: &'a str,
}

impl SmsTransport {
    pub fn json_lines(dir: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("Failed to create outbox directory {}", dir.display()))?;
        Ok(Self::JsonLines(dir.join("sms.jsonl")))
    }

    pub async fn send(&self, message: &OutgoingMessage<'_>) -> Result<String, SendError> {
        match self {
            SmsTransport::JsonLines(path) => {
                let id = message.id.to_string();
                let mut line = serde_json::to_string(&SmsLine {
                    id: id.clone(),
                    to: message.recipient,
                    text: message.body,
                })
                .map_err(|e| SendError::Permanent(e.to_string()))?;
                line.push('\n');
                // One write of a whole line to an O_APPEND file: lines from
                // concurrent writers do not interleave.
                let mut file = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await
                    .map_err(|e| {
                        SendError::Transient(format!("cannot open {}: {e}", path.display()))
                    })?;
                file.write_all(line.as_bytes()).await.map_err(|e| {
                    SendError::Transient(format!("cannot write {}: {e}", path.display()))
                })?;
                Ok(id)
            }
        }
    }
}
