//! Transports, chosen in configuration. The file ones are the development
//! default: a person (or a test) reads what was sent. The others talk to
//! real SMTP servers and SMS gateways, and classify each failure as
//! transient (retry) or permanent (dead-letter at once).
use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use lettre::{
    AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart, SinglePart, header::ContentType},
    transport::smtp::{
        PoolConfig,
        authentication::Credentials,
        client::{Certificate, Tls, TlsParameters},
    },
};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::config::{
    DeliverySettings, EmailTransportKind, SmsTransportKind, SmtpTls, TwilioSettings,
    WebhookSettings,
};

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
    pub fn class(&self) -> &'static str {
        match self {
            SendError::Transient(_) => "transient",
            SendError::Permanent(_) => "permanent",
        }
    }
}

pub enum EmailTransport {
    /// Writes each email as `<uuid>.eml` into a directory.
    File(AsyncFileTransport<Tokio1Executor>),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

pub struct EmailSender {
    transport: EmailTransport,
    from: Mailbox,
    reply_to: Option<Mailbox>,
}

impl EmailSender {
    pub fn from_settings(settings: &DeliverySettings, outbox_dir: PathBuf) -> anyhow::Result<Self> {
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

pub enum SmsTransport {
    /// Appends one JSON object per SMS to `sms.jsonl`.
    JsonLines(PathBuf),
    Webhook(HttpGateway<WebhookSettings>),
    Twilio(HttpGateway<TwilioSettings>),
}

pub struct HttpGateway<S> {
    client: reqwest::Client,
    settings: S,
}

#[derive(Serialize)]
struct SmsLine<'a> {
    id: String,
    to: &'a str,
    text: &'a str,
}

impl SmsTransport {
    pub fn from_settings(settings: &DeliverySettings, outbox_dir: PathBuf) -> anyhow::Result<Self> {
        let client = || {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(settings.sms.timeout_seconds))
                .connect_timeout(Duration::from_secs(settings.sms.timeout_seconds.min(5)))
                .build()
                .context("Failed to build the SMS gateway HTTP client")
        };
        Ok(match settings.sms.transport {
            SmsTransportKind::File => {
                std::fs::create_dir_all(&outbox_dir).with_context(|| {
                    format!("Failed to create outbox directory {}", outbox_dir.display())
                })?;
                SmsTransport::JsonLines(outbox_dir.join("sms.jsonl"))
            }
            SmsTransportKind::Webhook => {
                // Fail at start-up, not at the first SMS, on a bad template.
                minijinja::Environment::new()
                    .template_from_str(&settings.sms.webhook.body_template)
                    .context("delivery.sms.webhook.body_template is not a valid template")?;
                SmsTransport::Webhook(HttpGateway {
                    client: client()?,
                    settings: settings.sms.webhook.clone(),
                })
            }
            SmsTransportKind::Twilio => SmsTransport::Twilio(HttpGateway {
                client: client()?,
                settings: settings.sms.twilio.clone(),
            }),
        })
    }

    /// Returns the provider's message id.
    pub async fn send(&self, message: &OutgoingMessage<'_>) -> Result<String, SendError> {
        match self {
            SmsTransport::JsonLines(path) => append_line(path, message).await,
            SmsTransport::Webhook(gateway) => gateway.send_webhook(message).await,
            SmsTransport::Twilio(gateway) => gateway.send_twilio(message).await,
        }
    }
}

async fn append_line(path: &PathBuf, message: &OutgoingMessage<'_>) -> Result<String, SendError> {
    let id = message.id.to_string();
    let mut line = serde_json::to_string(&SmsLine {
        id: id.clone(),
        to: message.recipient,
        text: message.body,
    })
    .map_err(|e| SendError::Permanent(e.to_string()))?;
    line.push('\n');
    // One write of a whole line to an O_APPEND file: lines from concurrent
    // writers do not interleave.
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .map_err(|e| SendError::Transient(format!("cannot open {}: {e}", path.display())))?;
    file.write_all(line.as_bytes())
        .await
        .map_err(|e| SendError::Transient(format!("cannot write {}: {e}", path.display())))?;
    Ok(id)
}

impl HttpGateway<WebhookSettings> {
    async fn send_webhook(&self, message: &OutgoingMessage<'_>) -> Result<String, SendError> {
        let s = &self.settings;
        let body = minijinja::Environment::new()
            .render_str(
                &s.body_template,
                minijinja::context! { recipient => message.recipient, text => message.body, id => message.id.to_string() },
            )
            .map_err(|e| SendError::Permanent(format!("cannot render webhook body: {e}")))?;
        let method = if s.method == "PUT" {
            reqwest::Method::PUT
        } else {
            reqwest::Method::POST
        };
        let mut request = self
            .client
            .request(method, &s.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        for (name, value) in &s.headers {
            request = request.header(name, value.expose_secret());
        }
        let json = send_http(request).await?;
        Ok(provider_id(&json, &s.message_id_pointer).unwrap_or_else(|| message.id.to_string()))
    }
}

impl HttpGateway<TwilioSettings> {
    async fn send_twilio(&self, message: &OutgoingMessage<'_>) -> Result<String, SendError> {
        let s = &self.settings;
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            s.base_url.trim_end_matches('/'),
            s.account_sid
        );
        let token = s.auth_token.as_ref().map(|t| t.expose_secret().to_owned());
        let request = self
            .client
            .post(url)
            .basic_auth(&s.account_sid, token)
            .form(&[
                ("To", message.recipient),
                ("From", &s.from),
                ("Body", message.body),
            ]);
        let json = send_http(request).await?;
        Ok(provider_id(&json, "/sid").unwrap_or_else(|| message.id.to_string()))
    }
}

/// Sends and classifies: any 2xx succeeds; 408, 429 and 5xx are transient;
/// other 4xx are permanent; timeouts and connection errors are transient.
async fn send_http(request: reqwest::RequestBuilder) -> Result<serde_json::Value, SendError> {
    let response = request.send().await.map_err(|e| {
        let kind = if e.is_timeout() {
            "timed out"
        } else {
            "failed"
        };
        SendError::Transient(format!("gateway request {kind}: {}", without_url(&e)))
    })?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let excerpt: String = text.chars().take(200).collect();
    if status.is_success() {
        return Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null));
    }
    let error = format!("gateway answered {status}: {excerpt}");
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        Err(SendError::Transient(error))
    } else {
        Err(SendError::Permanent(error))
    }
}

/// reqwest errors print the URL, which may carry credentials; keep the kind.
fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "<gateway>");
    }
    text
}

fn provider_id(json: &serde_json::Value, pointer: &str) -> Option<String> {
    match json.pointer(pointer)? {
        serde_json::Value::String(id) => Some(id.clone()),
        serde_json::Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}
