//! The outbox, and the only module that touches its tables. `enqueue_*`
//! run in the caller's transaction, so a message exists exactly when the
//! registration change that wants it committed. `dispatch` is what the
//! delivery loop calls (claim with a lease, record each result); `history`
//! is what operators and hosts read (listing, requeueing, the timeline).
//! `delivery` holds the transports and the loop itself.
mod cancel;
mod dispatch;
mod history;
mod receipts;

pub use cancel::{CancelReason, cancel_expired, cancel_for_host, cancel_pending};
pub use dispatch::{
    Carrier, ClaimedMessage, Recorded, SendResult, backoff, claim, due, record_result,
};
pub use history::{
    Delivery, DeliveryEvent, deliveries_by_registration, list, retry_dead, timelines,
    waiting_by_channel,
};
pub use receipts::{Receipt, ReceiptApplied, ReceiptStatus, apply_receipt};

use anyhow::Context;
use chrono::{DateTime, Utc};
use entity::{
    outbox_message,
    states::{Channel, OutboxStatus},
};
use sea_orm::{ActiveValue::Set, DatabaseTransaction, EntityTrait};
use uuid::Uuid;

use crate::{crypto::Keys, error::CoreResult, templates::RenderedEmail};

pub async fn enqueue_sms(
    keys: &Keys,
    txn: &DatabaseTransaction,
    registration_id: Uuid,
    phone: &str,
    text: String,
    now: DateTime<Utc>,
) -> CoreResult<()> {
    enqueue(
        keys,
        txn,
        registration_id,
        Channel::Sms,
        phone,
        None,
        text,
        None,
        now,
    )
    .await
    .map(drop)
}

pub async fn enqueue_email(
    keys: &Keys,
    txn: &DatabaseTransaction,
    registration_id: Uuid,
    email: &str,
    message: RenderedEmail,
    now: DateTime<Utc>,
) -> CoreResult<()> {
    let RenderedEmail {
        subject,
        text,
        html,
    } = message;
    enqueue(
        keys,
        txn,
        registration_id,
        Channel::Email,
        email,
        Some(subject),
        text,
        Some(html),
        now,
    )
    .await
    .map(drop)
}

/// Queues a signed webhook to a host (`service::webhooks` calls it): the
/// recipient is the endpoint's URL, the body the JSON payload. Returns the
/// message's id.
pub async fn enqueue_webhook(
    keys: &Keys,
    txn: &DatabaseTransaction,
    registration_id: Uuid,
    url: &str,
    payload: String,
    now: DateTime<Utc>,
) -> CoreResult<Uuid> {
    enqueue(
        keys,
        txn,
        registration_id,
        Channel::Webhook,
        url,
        None,
        payload,
        None,
        now,
    )
    .await
}

/// Bodies are sealed (`Keys::seal`): they carry a live code or link.
#[allow(clippy::too_many_arguments)]
async fn enqueue(
    keys: &Keys,
    txn: &DatabaseTransaction,
    registration_id: Uuid,
    channel: Channel,
    recipient: &str,
    subject: Option<String>,
    body: String,
    html_body: Option<String>,
    now: DateTime<Utc>,
) -> CoreResult<Uuid> {
    let id = Uuid::now_v7();
    outbox_message::Entity::insert(outbox_message::ActiveModel {
        id: Set(id),
        registration_id: Set(registration_id),
        channel: Set(channel),
        recipient: Set(recipient.to_owned()),
        subject: Set(subject),
        body: Set(Some(keys.seal(id.as_bytes(), &body))),
        html_body: Set(html_body.map(|html| keys.seal(id.as_bytes(), &html))),
        status: Set(OutboxStatus::Pending),
        attempts: Set(0),
        next_attempt_at: Set(now),
        lease_until: Set(None),
        last_error: Set(None),
        last_error_class: Set(None),
        lease_token: Set(None),
        provider_message_id: Set(None),
        created_at: Set(now),
        sent_at: Set(None),
        provider: Set(None),
        provider_failures: Set(0),
    })
    .exec(txn)
    .await
    .with_context(|| format!("Failed to queue {}", channel.name()))?;
    Ok(id)
}
