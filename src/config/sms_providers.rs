//! `[[delivery.sms.providers]]`: several SMS providers, tried in order, each
//! for all countries or for the ones it lists. The single-provider settings
//! (`delivery.sms.transport`, `.webhook`, `.twilio`) are one provider named
//! `default` when no list is given. Which provider carries a message, and
//! which one it moves to after a failure, is decided here and only here.
use std::{borrow::Cow, collections::BTreeMap};

use anyhow::bail;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{SmsSettings, SmsTransportKind, TwilioSettings, WebhookSettings};

/// The name the single-provider settings go by.
pub const DEFAULT_PROVIDER: &str = "default";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmsProviderSettings {
    /// Names the provider in the receipt URL (`/delivery/receipts/NAME`),
    /// the timeline and the metrics: lowercase letters, digits, `-`, `_`.
    pub name: String,
    pub transport: SmsTransportKind,
    /// ISO 3166 alpha-2 codes of the countries it carries SMS to; empty:
    /// every country.
    pub countries: Vec<String>,
    /// Transient failures of one message here before it moves to the next
    /// provider for its country.
    pub failover_after: u32,
    /// Key of the `X-Signature` HMAC on this provider's delivery receipts
    /// (every transport but Twilio, whose receipts are signed with its
    /// auth token). Without it receipts are refused.
    #[serde(skip_serializing)]
    pub receipt_secret: Option<SecretString>,
    // The webhook transport's settings.
    pub url: String,
    pub method: String,
    #[serde(skip_serializing)]
    pub headers: BTreeMap<String, SecretString>,
    pub body_template: String,
    pub message_id_pointer: String,
    // The Twilio transport's settings.
    pub base_url: String,
    pub account_sid: String,
    #[serde(skip_serializing)]
    pub auth_token: Option<SecretString>,
    pub from: String,
}

impl Default for SmsProviderSettings {
    fn default() -> Self {
        let webhook = WebhookSettings::default();
        let twilio = TwilioSettings::default();
        Self {
            name: String::new(),
            transport: SmsTransportKind::Webhook,
            countries: Vec::new(),
            failover_after: 3,
            receipt_secret: None,
            url: webhook.url,
            method: webhook.method,
            headers: webhook.headers,
            body_template: webhook.body_template,
            message_id_pointer: webhook.message_id_pointer,
            base_url: twilio.base_url,
            account_sid: twilio.account_sid,
            auth_token: twilio.auth_token,
            from: twilio.from,
        }
    }
}

impl SmsProviderSettings {
    pub fn webhook(&self) -> WebhookSettings {
        WebhookSettings {
            url: self.url.clone(),
            method: self.method.clone(),
            headers: self.headers.clone(),
            body_template: self.body_template.clone(),
            message_id_pointer: self.message_id_pointer.clone(),
        }
    }

    pub fn twilio(&self) -> TwilioSettings {
        TwilioSettings {
            base_url: self.base_url.clone(),
            account_sid: self.account_sid.clone(),
            auth_token: self.auth_token.clone(),
            from: self.from.clone(),
        }
    }

    /// Whether it carries SMS to `country` (unknown countries go to the
    /// providers that list none).
    pub fn serves(&self, country: Option<&str>) -> bool {
        self.countries.is_empty()
            || country.is_some_and(|c| self.countries.iter().any(|s| s.eq_ignore_ascii_case(c)))
    }

    /// Whether its receipts can be verified, so that a message sent through
    /// it may still learn it was not delivered.
    pub fn takes_receipts(&self) -> bool {
        match self.transport {
            SmsTransportKind::Twilio => self.auth_token.is_some(),
            _ => self.receipt_secret.is_some(),
        }
    }

    fn from_single(sms: &SmsSettings) -> Self {
        let webhook = &sms.webhook;
        let twilio = &sms.twilio;
        Self {
            name: DEFAULT_PROVIDER.into(),
            transport: sms.transport,
            countries: Vec::new(),
            failover_after: u32::MAX,
            receipt_secret: sms.receipt_secret.clone(),
            url: webhook.url.clone(),
            method: webhook.method.clone(),
            headers: webhook.headers.clone(),
            body_template: webhook.body_template.clone(),
            message_id_pointer: webhook.message_id_pointer.clone(),
            base_url: twilio.base_url.clone(),
            account_sid: twilio.account_sid.clone(),
            auth_token: twilio.auth_token.clone(),
            from: twilio.from.clone(),
        }
    }

    pub(super) fn validate(&self, at: &str) -> anyhow::Result<()> {
        match self.transport {
            SmsTransportKind::File | SmsTransportKind::Memory => {}
            SmsTransportKind::Webhook => {
                if !self.url.starts_with("http://") && !self.url.starts_with("https://") {
                    bail!("{at}.url must be an http(s) URL");
                }
                if !["POST", "PUT"].contains(&self.method.as_str()) {
                    bail!("{at}.method must be POST or PUT");
                }
            }
            SmsTransportKind::Twilio => {
                if self.account_sid.is_empty() || self.auth_token.is_none() || self.from.is_empty()
                {
                    bail!("{at} (twilio) needs account_sid, auth_token and from");
                }
            }
        }
        Ok(())
    }
}

impl SmsSettings {
    /// Every provider, in the order they are tried.
    pub fn providers(&self) -> Cow<'_, [SmsProviderSettings]> {
        if self.providers.is_empty() {
            Cow::Owned(vec![SmsProviderSettings::from_single(self)])
        } else {
            Cow::Borrowed(&self.providers)
        }
    }

    pub fn provider(&self, name: &str) -> Option<SmsProviderSettings> {
        self.providers().iter().find(|p| p.name == name).cloned()
    }

    /// The names of the providers for an SMS to `country`, in order.
    pub fn route(&self, country: Option<&str>) -> Vec<String> {
        self.providers()
            .iter()
            .filter(|p| p.serves(country))
            .map(|p| p.name.clone())
            .collect()
    }

    /// Where a message to `country` goes after `current` failed it: the
    /// next provider on its route, if any.
    pub fn next_provider(&self, country: Option<&str>, current: &str) -> Option<String> {
        let route = self.route(country);
        let at = route.iter().position(|name| name == current)?;
        route.get(at + 1).cloned()
    }

    /// Where a message to `country` goes after a failed send on `current`
    /// (`failures_here` transient failures there, this one included): to
    /// the next provider on its route after a permanent failure or the
    /// provider's `failover_after`-th transient one; else it stays.
    pub fn failover(
        &self,
        country: Option<&str>,
        current: &str,
        permanent: bool,
        failures_here: u32,
    ) -> Option<String> {
        let limit = self
            .provider(current)
            .map_or(u32::MAX, |p| p.failover_after);
        if permanent || failures_here >= limit {
            self.next_provider(country, current)
        } else {
            None
        }
    }

    pub(super) fn validate_providers(&self) -> anyhow::Result<()> {
        if self.providers.is_empty() {
            return SmsProviderSettings::from_single(self).validate("delivery.sms");
        }
        let mut seen = std::collections::HashSet::new();
        for (i, provider) in self.providers.iter().enumerate() {
            let at = format!("delivery.sms.providers[{i}]");
            let name = &provider.name;
            if name.is_empty()
                || name.len() > 32
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            {
                bail!(
                    "{at}.name must be 1 to 32 lowercase letters, digits, '-' or '_' (it is part of the receipt URL), not {name:?}"
                );
            }
            if !seen.insert(name.as_str()) {
                bail!("{at}.name {name:?} is used by an earlier provider; names must be unique");
            }
            for country in &provider.countries {
                if isocountry::CountryCode::for_alpha2_caseless(country).is_err() {
                    bail!("{at}.countries: {country:?} is not an ISO 3166 alpha-2 country code");
                }
            }
            if provider.failover_after == 0 {
                bail!("{at}.failover_after must be at least 1");
            }
            provider.validate(&at)?;
        }
        Ok(())
    }

    /// Providers whose receipts would all be refused.
    pub(super) fn receipt_warnings(&self) -> Vec<String> {
        self.providers()
            .iter()
            .filter(|p| {
                !p.takes_receipts()
                    && matches!(
                        p.transport,
                        SmsTransportKind::Webhook | SmsTransportKind::Twilio
                    )
            })
            .map(|p| {
                format!(
                    "SMS provider {:?} has no receipt_secret: its delivery receipts are refused, and its SMS are never failed over on an undelivered receipt",
                    p.name
                )
            })
            .collect()
    }
}
