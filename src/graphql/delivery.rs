//! The delivery timeline of a registration's messages.
use async_graphql::{ComplexObject, Context, Enum, Result, SimpleObject};
use chrono::{DateTime, Utc};
use entity::states;
use uuid::Uuid;

use super::loaders::RequestLoaders;
use crate::service::outbox;

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "states::Channel")]
pub enum DeliveryChannel {
    Sms,
    Email,
    /// A signed webhook to the host; listed by `webhookDeliveries`, never
    /// among a registration's deliveries.
    Webhook,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "states::OutboxStatus")]
pub enum DeliveryStatus {
    /// Queued or waiting for a retry.
    Pending,
    /// Accepted by the SMTP server or SMS gateway.
    Sent,
    /// Given up on after its attempts or a permanent failure; its content
    /// is erased. Ask for a resend.
    Dead,
    /// Withdrawn before it was sent: its code or link was replaced or used,
    /// the registration completed, or the host was disabled.
    Cancelled,
    /// The SMS provider's receipt says it reached the phone.
    Delivered,
    /// The provider's receipt says the network could not deliver it, and no
    /// other provider was left to try. Ask for a resend.
    Undelivered,
    /// The provider's receipt says it failed before reaching the network,
    /// and no other provider was left to try. Ask for a resend.
    Failed,
}

/// One outgoing SMS or email and how its delivery went.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Delivery {
    pub id: Uuid,
    pub channel: DeliveryChannel,
    pub status: DeliveryStatus,
    /// Send attempts so far.
    pub attempts: i32,
    /// `transient` or `permanent`, of the last failure.
    pub last_error_class: Option<&'static str>,
    pub last_error: Option<String>,
    pub queued_at: DateTime<Utc>,
    /// When the next try is due, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
    /// The SMTP Message-ID or the gateway's message id.
    pub provider_message_id: Option<String>,
    /// For an SMS, the configured provider carrying it (or that carried it
    /// last).
    pub provider: Option<String>,
    /// What the timeline is read from, beside its rows.
    #[graphql(skip)]
    pub message: outbox::Delivery,
}

impl From<outbox::Delivery> for Delivery {
    fn from(d: outbox::Delivery) -> Self {
        Self {
            id: d.id,
            channel: d.channel.into(),
            status: d.status.into(),
            attempts: d.attempts,
            last_error_class: d.last_error_class.map(states::ErrorClass::name),
            last_error: d.last_error.clone(),
            queued_at: d.queued_at,
            next_attempt_at: d.next_attempt_at,
            sent_at: d.sent_at,
            provider_message_id: d.provider_message_id.clone(),
            provider: d.provider.clone(),
            message: d,
        }
    }
}

/// One event of a delivery's timeline after it was queued.
#[derive(SimpleObject)]
pub struct DeliveryEvent {
    pub at: DateTime<Utc>,
    /// `sent`, `failed` (will retry), `dead`, `requeued` (by an operator),
    /// `cancelled`, or a provider's receipt: `delivered`, `undelivered`,
    /// `provider_failed`.
    pub outcome: &'static str,
    pub error_class: Option<&'static str>,
    pub error: Option<String>,
    pub provider_message_id: Option<String>,
    /// The SMS provider that carried the attempt or sent the receipt.
    pub provider: Option<String>,
}

#[ComplexObject]
impl Delivery {
    /// Every attempt, oldest first.
    async fn timeline(&self, ctx: &Context<'_>) -> Result<Vec<DeliveryEvent>> {
        let loader = ctx.data::<RequestLoaders>()?.timeline();
        let rows = loader.load_one(self.id).await?.unwrap_or_default();
        Ok(self
            .message
            .timeline(rows)
            .into_iter()
            .map(|e| DeliveryEvent {
                at: e.at,
                outcome: e.outcome.name(),
                error_class: e.error_class.map(states::ErrorClass::name),
                error: e.error,
                provider_message_id: e.provider_message_id,
                provider: e.provider,
            })
            .collect())
    }
}
