//! Delivery settings: the transports for email and SMS and their options.
use std::{collections::BTreeMap, path::PathBuf};

use anyhow::bail;
use entity::states::Language;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::is_loopback;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliverySettings {
    /// Development transports write here: `*.eml` files and `sms.jsonl`.
    /// Empty means `<data_dir>/outbox`.
    pub outbox_dir: PathBuf,
    pub poll_interval_ms: u64,
    /// Tries before a message is dead-lettered.
    pub max_attempts: u32,
    /// The most sends the delivery loop keeps out at once (it claims more
    /// when half have come back), so also the most connections this
    /// instance opens to the SMTP relay or an SMS gateway at a time. 1 to
    /// 500.
    pub batch_size: u64,
    /// `id` or `en`: for registrations that name no language and whose
    /// country has no language of its own here.
    pub default_language: Language,
    /// Directory of template overrides (`<lang>/sms.txt`, ...); empty: built-in.
    pub templates_dir: PathBuf,
    /// Sender of emails, `Name <address>`.
    pub from: String,
    /// Optional Reply-To of emails.
    pub reply_to: String,
    pub email: EmailSettings,
    pub sms: SmsSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailTransportKind {
    File,
    Smtp,
    /// Kept in the process, for tests; nothing leaves the machine.
    Memory,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailSettings {
    pub transport: EmailTransportKind,
    pub smtp: SmtpSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// TLS from the first byte (SMTPS, port 465).
    Implicit,
    /// Plain connection upgraded with STARTTLS (submission, port 587).
    Starttls,
    /// No TLS at all: only accepted for a server on the loopback interface.
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    /// 0 means the usual port of the TLS mode (465, 587 or 25).
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    #[serde(skip_serializing)]
    pub password: Option<SecretString>,
    pub timeout_seconds: u64,
    pub pool_size: u32,
    /// PEM file of a certificate authority to trust besides the public
    /// ones, for a relay with a private CA.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsTransportKind {
    File,
    Webhook,
    Twilio,
    /// Kept in the process, for tests; nothing leaves the machine.
    Memory,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmsSettings {
    pub transport: SmsTransportKind,
    pub timeout_seconds: u64,
    pub webhook: WebhookSettings,
    pub twilio: TwilioSettings,
    /// Key of the `X-Signature` HMAC on the single provider's receipts.
    #[serde(skip_serializing)]
    pub receipt_secret: Option<SecretString>,
    /// Several providers, tried in order; when given, `transport`,
    /// `webhook`, `twilio` and `receipt_secret` above are not used.
    pub providers: Vec<super::SmsProviderSettings>,
    /// Consecutive failed sends after which this instance skips a provider
    /// (while another can carry the SMS) ...
    pub breaker_failures: u32,
    /// ... for this long; then one SMS tries it again.
    pub breaker_cooldown_seconds: u64,
}

/// A generic JSON SMS gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    pub url: String,
    /// `POST` or `PUT`.
    pub method: String,
    /// Sent with every request; values often hold API keys.
    #[serde(skip_serializing)]
    pub headers: BTreeMap<String, SecretString>,
    /// minijinja template of the JSON body; `recipient` and `text` are set.
    pub body_template: String,
    /// JSON pointer to the provider's message id in the response.
    pub message_id_pointer: String,
}

/// A Twilio-style Messages API (form-encoded, HTTP Basic).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TwilioSettings {
    pub base_url: String,
    pub account_sid: String,
    #[serde(skip_serializing)]
    pub auth_token: Option<SecretString>,
    /// Sender number or alphanumeric sender id.
    pub from: String,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            outbox_dir: PathBuf::new(),
            poll_interval_ms: 500,
            max_attempts: 8,
            batch_size: 50,
            default_language: Language::En,
            templates_dir: PathBuf::new(),
            from: "Registration <no-reply@registration.local>".into(),
            reply_to: String::new(),
            email: EmailSettings::default(),
            sms: SmsSettings::default(),
        }
    }
}

impl Default for EmailSettings {
    fn default() -> Self {
        Self {
            transport: EmailTransportKind::File,
            smtp: SmtpSettings::default(),
        }
    }
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: 0,
            tls: SmtpTls::Starttls,
            username: None,
            password: None,
            timeout_seconds: 10,
            pool_size: 4,
            ca_file: None,
        }
    }
}

impl Default for SmsSettings {
    fn default() -> Self {
        Self {
            transport: SmsTransportKind::File,
            timeout_seconds: 10,
            webhook: WebhookSettings::default(),
            twilio: TwilioSettings::default(),
            receipt_secret: None,
            providers: Vec::new(),
            breaker_failures: 5,
            breaker_cooldown_seconds: 30,
        }
    }
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            method: "POST".into(),
            headers: BTreeMap::new(),
            body_template: r#"{"to": {{ recipient|tojson }}, "text": {{ text|tojson }}}"#.into(),
            message_id_pointer: "/id".into(),
        }
    }
}

impl Default for TwilioSettings {
    fn default() -> Self {
        Self {
            base_url: "https://api.twilio.com".into(),
            account_sid: String::new(),
            auth_token: None,
            from: String::new(),
        }
    }
}

impl DeliverySettings {
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        let d = self;
        if d.max_attempts == 0 {
            bail!("delivery.max_attempts must be at least 1");
        }
        // 0 would send nothing, ever; the cap keeps a pass's connections
        // and file-writing threads within reason.
        if !(1..=500).contains(&d.batch_size) {
            bail!("delivery.batch_size must be between 1 and 500");
        }
        if d.email.transport == EmailTransportKind::Smtp {
            let smtp = &d.email.smtp;
            if smtp.host.is_empty() {
                bail!(
                    "delivery.email.smtp.host is required when delivery.email.transport = \"smtp\""
                );
            }
            if smtp.tls == SmtpTls::None && !is_loopback(&smtp.host) {
                bail!(
                    "delivery.email.smtp.tls = \"none\" is only allowed for a loopback host, not {}",
                    smtp.host
                );
            }
            if smtp.username.is_some() != smtp.password.is_some() {
                bail!("delivery.email.smtp.username and password go together");
            }
        }
        d.sms.validate_providers()?;
        if d.sms.breaker_failures == 0 {
            bail!("delivery.sms.breaker_failures must be at least 1");
        }
        Ok(())
    }
}
