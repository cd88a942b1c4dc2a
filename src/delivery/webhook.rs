//! Signed webhooks to hosts' endpoints (Standard Webhooks): one JSON POST
//! per attempt, with `webhook-id` (stable across retries and replays),
//! `webhook-timestamp` (this attempt) and `webhook-signature`.
use std::time::Duration;

use anyhow::Context;
use reqwest::redirect;

use super::SendError;
use crate::{
    config::WebhookDeliverySettings, crypto::sign_webhook, service::webhooks::WebhookSend,
};

pub struct WebhookTransport {
    client: reqwest::Client,
}

impl WebhookTransport {
    pub fn from_settings(settings: &WebhookDeliverySettings) -> anyhow::Result<Self> {
        let timeout = Duration::from_secs(settings.timeout_seconds);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            // A redirect would send the signed payload somewhere the host
            // did not register; a 3xx is an answer like any other.
            .redirect(redirect::Policy::none())
            .user_agent(concat!("customer-registration/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("Failed to build the webhook HTTP client")?;
        Ok(Self { client })
    }

    /// POSTs the payload signed for this attempt. 2xx is delivered; 408,
    /// 429, 5xx, timeouts and connection errors are transient; anything
    /// else (other 4xx, a 3xx) is permanent. Returns the `webhook-id`.
    pub async fn send(
        &self,
        target: &WebhookSend,
        payload: &str,
        timestamp: i64,
    ) -> Result<String, SendError> {
        let signature = sign_webhook(&target.secret, &target.webhook_id, timestamp, payload)
            .map_err(|e| SendError::Permanent(e.to_string()))?;
        let response = self
            .client
            .post(&target.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &target.webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(payload.to_owned())
            .send()
            .await
            // The URL is the host's; the error names the kind only.
            .map_err(|e| SendError::unanswered("endpoint", &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(target.webhook_id.clone());
        }
        let text = response.text().await.unwrap_or_default();
        Err(SendError::from_answer("endpoint", status, &text))
    }
}
