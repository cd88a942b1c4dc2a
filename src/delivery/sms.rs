//! SMS to an HTTP gateway (a generic webhook or Twilio), to a JSON-lines
//! file, or into memory.
use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use entity::states::Channel;
use secrecy::ExposeSecret;
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::{MemoryOutbox, OutgoingMessage, SendError};
use crate::config::{SmsProviderSettings, SmsTransportKind, TwilioSettings, WebhookSettings};

pub enum SmsTransport {
    /// Appends one JSON object per SMS to `sms.jsonl`.
    JsonLines(PathBuf),
    Webhook(HttpGateway<Webhook>),
    Twilio(HttpGateway<TwilioSettings>),
    Memory(MemoryOutbox),
}

pub struct HttpGateway<S> {
    client: reqwest::Client,
    settings: S,
    /// Where the provider posts delivery receipts, when it takes them.
    callback_url: Option<String>,
}

#[derive(Serialize)]
struct SmsLine<'a> {
    id: String,
    to: &'a str,
    text: &'a str,
}

impl SmsTransport {
    /// `callback_url` is where the provider is asked to post receipts.
    pub fn from_settings(
        provider: &SmsProviderSettings,
        timeout_seconds: u64,
        outbox_dir: PathBuf,
        memory: &MemoryOutbox,
        callback_url: Option<String>,
    ) -> anyhow::Result<Self> {
        let client = || {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(timeout_seconds))
                .connect_timeout(Duration::from_secs(timeout_seconds.min(5)))
                .build()
                .context("Failed to build the SMS gateway HTTP client")
        };
        Ok(match provider.transport {
            SmsTransportKind::File => {
                std::fs::create_dir_all(&outbox_dir).with_context(|| {
                    format!("Failed to create outbox directory {}", outbox_dir.display())
                })?;
                SmsTransport::JsonLines(outbox_dir.join("sms.jsonl"))
            }
            SmsTransportKind::Webhook => {
                // Parsed once, so a bad template fails the start, not the
                // first SMS, and no send parses it again.
                let body = WebhookBody::parse(&provider.body_template).with_context(|| {
                    format!(
                        "the body_template of SMS provider {:?} is not a valid template",
                        provider.name
                    )
                })?;
                SmsTransport::Webhook(HttpGateway {
                    client: client()?,
                    settings: Webhook {
                        settings: provider.webhook(),
                        body,
                    },
                    callback_url,
                })
            }
            SmsTransportKind::Memory => SmsTransport::Memory(memory.clone()),
            SmsTransportKind::Twilio => SmsTransport::Twilio(HttpGateway {
                client: client()?,
                settings: provider.twilio(),
                callback_url,
            }),
        })
    }

    /// Returns the provider's message id.
    pub async fn send(&self, message: &OutgoingMessage<'_>) -> Result<String, SendError> {
        match self {
            SmsTransport::JsonLines(path) => append_line(path, message).await,
            SmsTransport::Webhook(gateway) => gateway.send_webhook(message).await,
            SmsTransport::Twilio(gateway) => gateway.send_twilio(message).await,
            SmsTransport::Memory(outbox) => {
                outbox.record(Channel::Sms, message);
                Ok(message.id.to_string())
            }
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

/// A generic webhook gateway: its settings and its body template, parsed.
pub struct Webhook {
    settings: WebhookSettings,
    body: WebhookBody,
}

/// The webhook's `body_template`, parsed once at start-up (boxed: an
/// environment is large beside the other transports).
struct WebhookBody(Box<minijinja::Environment<'static>>);

impl WebhookBody {
    /// No file extension: minijinja picks auto-escaping by the template's
    /// name, and the body is escaped only where it says so (`tojson`).
    const NAME: &'static str = "body";

    fn parse(source: &str) -> Result<Self, minijinja::Error> {
        let mut env = minijinja::Environment::new();
        env.add_template_owned(Self::NAME, source.to_owned())?;
        Ok(Self(Box::new(env)))
    }

    fn render(&self, context: minijinja::Value) -> Result<String, minijinja::Error> {
        self.0.get_template(Self::NAME)?.render(context)
    }
}

impl HttpGateway<Webhook> {
    async fn send_webhook(&self, message: &OutgoingMessage<'_>) -> Result<String, SendError> {
        let Webhook { settings: s, body } = &self.settings;
        let body = body
            .render(minijinja::context! {
                recipient => message.recipient,
                text => message.body,
                id => message.id.to_string(),
                callback_url => self.callback_url.as_deref().unwrap_or_default(),
            })
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
        let mut form = vec![
            ("To", message.recipient),
            ("From", &s.from),
            ("Body", message.body),
        ];
        if let Some(callback) = &self.callback_url {
            form.push(("StatusCallback", callback));
        }
        let request = self
            .client
            .post(url)
            .basic_auth(&s.account_sid, token)
            .form(&form);
        let json = send_http(request).await?;
        Ok(provider_id(&json, "/sid").unwrap_or_else(|| message.id.to_string()))
    }
}

/// Sends and classifies: any 2xx succeeds; 408, 429 and 5xx are transient;
/// other 4xx are permanent; timeouts and connection errors are transient.
async fn send_http(request: reqwest::RequestBuilder) -> Result<serde_json::Value, SendError> {
    let response = request
        .send()
        .await
        .map_err(|e| SendError::unanswered("gateway", &e))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if status.is_success() {
        return Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null));
    }
    Err(SendError::from_answer("gateway", status, &text))
}

fn provider_id(json: &serde_json::Value, pointer: &str) -> Option<String> {
    match json.pointer(pointer)? {
        serde_json::Value::String(id) => Some(id.clone()),
        serde_json::Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook_with(body_template: &str) -> anyhow::Result<SmsTransport> {
        let provider = SmsProviderSettings {
            name: "acme-sms".into(),
            url: "http://127.0.0.1:9/sms".into(),
            body_template: body_template.into(),
            ..SmsProviderSettings::default()
        };
        SmsTransport::from_settings(
            &provider,
            5,
            std::env::temp_dir(),
            &MemoryOutbox::default(),
            None,
        )
    }

    #[test]
    fn a_body_template_that_does_not_parse_stops_the_start_naming_its_provider() {
        let Err(error) = webhook_with(r#"{"to": {{ recipient|tojson }"#) else {
            panic!("an unclosed tag was taken for a template");
        };
        let message = format!("{error:#}");
        assert!(
            message.contains(
                r#"the body_template of SMS provider "acme-sms" is not a valid template"#
            ),
            "{message}"
        );
    }

    #[test]
    fn the_parsed_body_renders_each_message_as_its_own_json() {
        let default = SmsProviderSettings::default().body_template;
        let body = WebhookBody::parse(&default).expect("the default template parses");
        for text in [r#"Code "123" <b>&</b>"#, "line one\nline two"] {
            let rendered = body
                .render(minijinja::context! { recipient => "+6281234567890", text => text })
                .expect("renders");
            let json: serde_json::Value = serde_json::from_str(&rendered).expect("valid JSON");
            assert_eq!(json["to"], "+6281234567890");
            assert_eq!(json["text"], text);
        }
    }
}
