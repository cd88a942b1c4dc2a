//! The calling host's signed webhooks: what was sent and how it went.
use async_graphql::SimpleObject;
use chrono::{DateTime, Utc};
use entity::states;

use super::delivery::DeliveryStatus;
use crate::service::webhooks;

/// One webhook to the host's endpoint and how its delivery went.
#[derive(SimpleObject)]
pub struct WebhookDelivery {
    /// This delivery; a replay is a delivery of its own.
    pub id: uuid::Uuid,
    /// The `webhook-id` header, the same for every attempt and for replays
    /// of the same event: deduplicate on it.
    pub webhook_id: String,
    /// `registration.started`, `registration.completed`,
    /// `registration.locked`, `message.delivered`, `message.failed` or
    /// `host.budget_warning`.
    pub event_type: String,
    /// `SENT` once the endpoint answered 2xx.
    pub status: DeliveryStatus,
    /// Attempts so far.
    pub attempts: i32,
    /// `transient` or `permanent`, of the last failure.
    pub last_error_class: Option<&'static str>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When the next try is due, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
}

impl From<webhooks::WebhookDeliveryView> for WebhookDelivery {
    fn from(d: webhooks::WebhookDeliveryView) -> Self {
        Self {
            id: d.id,
            webhook_id: d.webhook_id,
            event_type: d.event_type,
            status: d.status.into(),
            attempts: d.attempts,
            last_error_class: d.last_error_class.map(states::ErrorClass::name),
            last_error: d.last_error,
            created_at: d.created_at,
            next_attempt_at: d.next_attempt_at,
            sent_at: d.sent_at,
        }
    }
}

/// One page of webhook deliveries, newest first.
#[derive(SimpleObject)]
pub struct WebhookDeliveryPage {
    pub items: Vec<WebhookDelivery>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}
