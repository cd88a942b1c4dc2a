//! Email over SMTP (lettre), to `.eml` files, or into memory.
use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use entity::states::Channel;
use lettre::{
    AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart, SinglePart, header::ContentType},
    transport::smtp::{
        PoolConfig,
        authentication::Credentials,
        client::{Certificate, Tls, TlsParameters},
    },
};
use secrecy::ExposeSecret;

use super::{MemoryOutbox, OutgoingMessage, SendError};
use crate::config::{DeliverySettings, EmailTransportKind, SmtpTls};

pub enum EmailTransport {
    /// Writes each email as `<uuid>.eml` into a directory.
    File(AsyncFileTransport<Tokio1Executor>),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Memory(MemoryOutbox),
}

pub struct EmailSender {
    transport: EmailTransport,
    from: Mailbox,
    reply_to: Option<Mailbox>,
}

impl EmailSender {
    pub fn from_settings(
        settings: &DeliverySettings,
        outbox_dir: PathBuf,
        memory: &MemoryOutbox,
    ) -> anyhow::Result<Self> {
        let from: Mailbox = settings
            .from
            .parse()
            .with_context(|| format!("delivery.from is not a mailbox: {}", settings.from))?;
        let reply_to = match settings.reply_to.trim() {
            "" => None,
            value => Some(
                value
                    .parse()
                    .with_context(|| format!("delivery.reply_to is not a mailbox: {value}"))?,
            ),
        };
        let transport = match settings.email.transport {
            EmailTransportKind::File => {
                std::fs::create_dir_all(&outbox_dir).with_context(|| {
                    format!("Failed to create outbox directory {}", outbox_dir.display())
                })?;
                EmailTransport::File(AsyncFileTransport::new(outbox_dir))
            }
            EmailTransportKind::Smtp => EmailTransport::Smtp(smtp_transport(settings)?),
            EmailTransportKind::Memory => EmailTransport::Memory(memory.clone()),
        };
        Ok(Self {
            transport,
            from,
            reply_to,
        })
    }

    /// Returns the Message-ID, which is also the provider's id for email.
    pub async fn send(&self, message: &OutgoingMessage<'_>) -> Result<String, SendError> {
        let to: Mailbox = message
            .recipient
            .parse()
            .map_err(|e| SendError::Permanent(format!("invalid recipient: {e}")))?;
        let domain = self.from.email.domain().to_owned();
        // Derived from the outbox id, so a retried email keeps its Message-ID
        // and receivers can drop a duplicate.
        let message_id = format!("<{}@{domain}>", message.id);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(message.subject.unwrap_or_default())
            .message_id(Some(message_id.clone()));
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        let email = match message.html_body {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                message.body.to_owned(),
                html.to_owned(),
            )),
            None => builder.singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(message.body.to_owned()),
            ),
        }
        .map_err(|e| SendError::Permanent(format!("cannot build email: {e}")))?;
        match &self.transport {
            EmailTransport::File(transport) => transport
                .send(email)
                .await
                .map(|_| message_id)
                .map_err(|e| SendError::Transient(format!("cannot write email file: {e}"))),
            EmailTransport::Memory(outbox) => {
                outbox.record(Channel::Email, message);
                Ok(message_id)
            }
            EmailTransport::Smtp(transport) => transport
                .send(email)
                .await
                .map(|_| message_id)
                .map_err(classify_smtp_error),
        }
    }
}

fn smtp_transport(
    settings: &DeliverySettings,
) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let smtp = &settings.email.smtp;
    let default_port = match smtp.tls {
        SmtpTls::Implicit => 465,
        SmtpTls::Starttls => 587,
        SmtpTls::None => 25,
    };
    // Validated to be loopback only when plain, see `Settings::validate`.
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
        .port(if smtp.port == 0 {
            default_port
        } else {
            smtp.port
        })
        .timeout(Some(Duration::from_secs(smtp.timeout_seconds)))
        .pool_config(PoolConfig::new().max_size(smtp.pool_size));
    if smtp.tls != SmtpTls::None {
        let mut parameters = TlsParameters::builder(smtp.host.clone());
        if let Some(path) = &smtp.ca_file {
            let pem = std::fs::read(path).with_context(|| {
                format!(
                    "Failed to read delivery.email.smtp.ca_file {}",
                    path.display()
                )
            })?;
            let certificate = Certificate::from_pem(&pem)
                .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
            parameters = parameters.add_root_certificate(certificate);
        }
        let parameters = parameters
            .build_rustls()
            .context("Failed to set up TLS for SMTP")?;
        // Required, not opportunistic: a server that does not offer
        // STARTTLS must not receive the credentials or the link in clear.
        builder = builder.tls(match smtp.tls {
            SmtpTls::Implicit => Tls::Wrapper(parameters),
            _ => Tls::Required(parameters),
        });
    }
    if let (Some(username), Some(password)) = (&smtp.username, &smtp.password) {
        builder = builder.credentials(Credentials::new(
            username.clone(),
            password.expose_secret().to_owned(),
        ));
    }
    Ok(builder.build())
}

/// SMTP: a 5xx reply is permanent; 4xx replies, timeouts and connection
/// problems are transient.
fn classify_smtp_error(error: lettre::transport::smtp::Error) -> SendError {
    let text = error.to_string();
    if error.is_permanent() {
        SendError::Permanent(format!("SMTP: {text}"))
    } else {
        SendError::Transient(format!("SMTP: {text}"))
    }
}
