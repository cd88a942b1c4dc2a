//! A host's webhook deliveries: listed, replayed, and forgotten with the
//! outbox messages retention purges.
use anyhow::Context;
use chrono::{DateTime, Utc};
use entity::{
    outbox_message,
    states::{ErrorClass, OutboxStatus},
    webhook_delivery,
};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::{delivery_insert, enabled_endpoint};
use crate::{
    error::{CoreError, CoreResult},
    service::{hosts::AuthenticatedHost, outbox, write},
    state::Core,
};

/// One webhook delivery as its host sees it: how it went, not its payload.
#[derive(Debug, Clone)]
pub struct WebhookDeliveryView {
    pub id: Uuid,
    /// The `webhook-id` header; a replay keeps its original's.
    pub webhook_id: String,
    pub event_type: String,
    pub status: OutboxStatus,
    pub attempts: i32,
    pub last_error_class: Option<ErrorClass>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
}

fn view(delivery: webhook_delivery::Model, message: outbox_message::Model) -> WebhookDeliveryView {
    WebhookDeliveryView {
        id: delivery.message_id,
        webhook_id: delivery.webhook_id,
        event_type: delivery.event_type,
        status: message.status,
        attempts: message.attempts,
        last_error_class: message.last_error_class,
        last_error: message.last_error,
        created_at: delivery.created_at,
        next_attempt_at: (message.status == OutboxStatus::Pending)
            .then_some(message.next_attempt_at),
        sent_at: message.sent_at,
    }
}

/// The calling host's webhook deliveries, newest first, `first` at a time
/// after the cursor; and whether more follow.
pub async fn list_deliveries(
    core: &Core,
    host: &AuthenticatedHost,
    first: u64,
    after: Option<Uuid>,
) -> CoreResult<(Vec<WebhookDeliveryView>, bool)> {
    let mut query = webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::HostId.eq(host.id))
        .order_by_desc(webhook_delivery::Column::MessageId)
        .limit(first + 1);
    if let Some(after) = after {
        query = query.filter(webhook_delivery::Column::MessageId.lt(after));
    }
    let mut rows = query
        .all(&core.db)
        .await
        .context("Failed to list webhook deliveries")?;
    let has_more = rows.len() as u64 > first;
    rows.truncate(usize::try_from(first).unwrap_or(usize::MAX));
    let messages = outbox_message::Entity::find()
        .filter(outbox_message::Column::Id.is_in(rows.iter().map(|r| r.message_id)))
        .all(&core.db)
        .await
        .context("Failed to load webhook messages")?;
    let mut by_id: std::collections::HashMap<Uuid, outbox_message::Model> =
        messages.into_iter().map(|m| (m.id, m)).collect();
    let views = rows
        .into_iter()
        .filter_map(|row| by_id.remove(&row.message_id).map(|m| view(row, m)))
        .collect();
    Ok((views, has_more))
}

/// Queues the delivery again, as a new delivery with the same payload and
/// the same `webhook-id` (so a receiver that got it already can tell), to
/// the endpoint as it is now. Another host's id is not found.
pub async fn replay(
    core: &Core,
    host: &AuthenticatedHost,
    id: Uuid,
) -> CoreResult<WebhookDeliveryView> {
    let original = webhook_delivery::Entity::find_by_id(id)
        .filter(webhook_delivery::Column::HostId.eq(host.id))
        .one(&core.db)
        .await
        .context("Failed to look up the webhook delivery")?
        .ok_or(CoreError::WebhookDeliveryNotFound)?;
    let registration_id = outbox_message::Entity::find_by_id(id)
        .select_only()
        .column(outbox_message::Column::RegistrationId)
        .into_tuple::<Uuid>()
        .one(&core.db)
        .await
        .context("Failed to look up the webhook message")?
        .ok_or(CoreError::WebhookDeliveryNotFound)?;
    let payload = core.keys.open(id.as_bytes(), &original.payload)?;
    let now = core.clock.now();
    let txn = write::begin(core).await?;
    let Some(endpoint) = enabled_endpoint(&*txn, host.id).await? else {
        write::rollback(txn).await?;
        return Err(CoreError::field(
            "id",
            "no_webhook",
            "the host has no enabled webhook endpoint to replay to",
        ));
    };
    // Both sent with the commit (`WriteTxn::hold`).
    let (message_id, message) = outbox::webhook_insert(
        &core.keys,
        registration_id,
        &endpoint.url,
        payload.clone(),
        now,
    );
    txn.hold(message);
    txn.hold(delivery_insert(
        &core.keys,
        message_id,
        host.id,
        &original.webhook_id,
        &original.event_type,
        &payload,
        now,
    ));
    write::commit(txn).await?;
    core.outbox_signal.notify_one();
    tracing::info!(host = %host.name, delivery = %id, replay = %message_id, "webhook replay queued");
    let (delivery, message) = webhook_delivery::Entity::find_by_id(message_id)
        .one(&core.db)
        .await
        .context("Failed to load the replay")?
        .zip(
            outbox_message::Entity::find_by_id(message_id)
                .one(&core.db)
                .await
                .context("Failed to load the replay")?,
        )
        .ok_or_else(|| anyhow::anyhow!("replayed webhook {message_id} vanished"))?;
    Ok(view(delivery, message))
}

/// Deletes the webhook deliveries of purged outbox messages (retention).
pub async fn forget_deliveries(db: &impl ConnectionTrait, message_ids: &[Uuid]) -> CoreResult<()> {
    for chunk in message_ids.chunks(500) {
        webhook_delivery::Entity::delete_many()
            .filter(webhook_delivery::Column::MessageId.is_in(chunk.iter().copied()))
            .exec(db)
            .await
            .context("Failed to purge webhook deliveries")?;
    }
    Ok(())
}
