//! Signed webhooks to hosts: the endpoint a host registers, the events
//! queued for it, its listing and replays. Events go out through the outbox
//! (channel `webhook`) with its retries, backoff, leases and dead letters;
//! `enqueue_event` runs in the caller's transaction, so an event exists
//! exactly when the change it reports committed. This module owns the
//! `webhook_endpoint` and `webhook_delivery` tables: `events` builds the
//! payloads, `endpoints` sets and disables a host's endpoint, `deliveries`
//! lists and replays; this file queues events and serves the outbox.
mod deliveries;
mod endpoints;
mod events;

use anyhow::Context;
use chrono::{DateTime, Utc};
use entity::{
    host, outbox_message, registration,
    states::{Channel, ErrorClass},
    webhook_delivery, webhook_endpoint,
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QuerySelect, QueryTrait, sea_query::InsertStatement,
};
use secrecy::SecretString;
use uuid::Uuid;

pub use deliveries::{WebhookDeliveryView, forget_deliveries, list_deliveries, replay};
pub use endpoints::{NewEndpoint, disable_endpoint, set_endpoint};
pub use events::{EventType, LockReason, WebhookEvent};

use crate::{
    crypto::Keys,
    db::together,
    error::CoreResult,
    service::{outbox, write::WriteTxn},
    state::Core,
};

/// Queues the event for the host's endpoint, in the caller's transaction;
/// nothing when the host has no enabled endpoint. Returns the delivery's id.
/// Call `core.outbox_signal.notify_one()` after the commit.
pub async fn enqueue_event(
    keys: &Keys,
    txn: &DatabaseTransaction,
    host_id: Uuid,
    event: &WebhookEvent,
    now: DateTime<Utc>,
) -> CoreResult<Option<Uuid>> {
    let Some(endpoint) = enabled_endpoint(txn, host_id).await? else {
        return Ok(None);
    };
    enqueue_event_to(keys, txn, &endpoint.url, host_id, event, now)
        .await
        .map(Some)
}

/// Queues the event for the host's endpoint at `url`, which the caller
/// read with [`enabled_endpoint_url`] together with other things (confirm
/// and resend before their transactions): its two inserts in one
/// statement on PostgreSQL (`db::together`).
pub async fn enqueue_event_to(
    keys: &Keys,
    txn: &DatabaseTransaction,
    url: &str,
    host_id: Uuid,
    event: &WebhookEvent,
    now: DateTime<Utc>,
) -> CoreResult<Uuid> {
    let (id, inserts) = event_inserts(keys, url, host_id, event, now);
    together::execute_all(txn, inserts.into())
        .await
        .context("Failed to queue a webhook event")?;
    Ok(id)
}

/// Holds the event for the host's endpoint at `url` in `txn`, to go with
/// its next statement (`WriteTxn::hold`): register reads the URL in its
/// checks.
pub fn hold_event_to(
    keys: &Keys,
    txn: &WriteTxn,
    url: &str,
    host_id: Uuid,
    event: &WebhookEvent,
    now: DateTime<Utc>,
) -> Uuid {
    let (id, inserts) = event_inserts(keys, url, host_id, event, now);
    for insert in inserts {
        txn.hold(insert);
    }
    id
}

/// The inserts of an event: its message in the outbox, then its delivery
/// record. With the message's id.
fn event_inserts(
    keys: &Keys,
    url: &str,
    host_id: Uuid,
    event: &WebhookEvent,
    now: DateTime<Utc>,
) -> (Uuid, [InsertStatement; 2]) {
    let payload = event.payload();
    let (id, message) =
        outbox::webhook_insert(keys, event.registration_id, url, payload.clone(), now);
    let delivery = delivery_insert(
        keys,
        id,
        host_id,
        &format!("msg_{}", id.simple()),
        event.kind.name(),
        &payload,
        now,
    );
    (id, [message, delivery])
}

/// The insert recording a webhook's delivery, beside its message.
fn delivery_insert(
    keys: &Keys,
    message_id: Uuid,
    host_id: Uuid,
    webhook_id: &str,
    event_type: &str,
    payload: &str,
    now: DateTime<Utc>,
) -> InsertStatement {
    webhook_delivery::Entity::insert(webhook_delivery::ActiveModel {
        message_id: Set(message_id),
        host_id: Set(host_id),
        webhook_id: Set(webhook_id.to_owned()),
        event_type: Set(event_type.to_owned()),
        payload: Set(keys.seal(message_id.as_bytes(), payload)),
        created_at: Set(now),
    })
    .into_query()
}

/// The URL of the enabled endpoint of the host `host_id` names (a value, or
/// a column of an enclosing query), as a query returning at most one row,
/// for a caller that reads it together with other things.
pub fn enabled_endpoint_url(
    host_id: impl Into<sea_orm::sea_query::Expr>,
) -> sea_orm::sea_query::SelectStatement {
    use sea_orm::sea_query::{Expr, ExprTrait};
    sea_orm::sea_query::Query::select()
        .column((webhook_endpoint::Entity, webhook_endpoint::Column::Url))
        .from(webhook_endpoint::Entity)
        .and_where(
            Expr::col((webhook_endpoint::Entity, webhook_endpoint::Column::HostId)).eq(host_id),
        )
        .and_where(
            Expr::col((
                webhook_endpoint::Entity,
                webhook_endpoint::Column::DisabledAt,
            ))
            .is_null(),
        )
        .to_owned()
}

async fn enabled_endpoint(
    db: &impl ConnectionTrait,
    host_id: Uuid,
) -> CoreResult<Option<webhook_endpoint::Model>> {
    Ok(webhook_endpoint::Entity::find_by_id(host_id)
        .filter(webhook_endpoint::Column::DisabledAt.is_null())
        .one(db)
        .await
        .context("Failed to look up the host's webhook endpoint")?)
}

/// Called by the outbox when a message dies, in the transaction recording
/// it: a message to the customer becomes a `message.failed` event for its
/// host. A dead webhook reports nothing (it would only die the same way).
pub async fn message_dead(
    core: &Core,
    txn: &DatabaseTransaction,
    message_id: Uuid,
    channel: Channel,
    class: ErrorClass,
    error: &str,
    now: DateTime<Utc>,
) -> CoreResult<()> {
    tell_host(core, txn, message_id, channel, now, |registration| {
        WebhookEvent::message_failed(
            registration.id,
            &registration.phone,
            message_id,
            channel,
            class,
            error,
            now,
        )
    })
    .await
}

/// For the delivery receipts, in the transaction recording one: the
/// customer received the message, and its host hears of it.
pub async fn message_delivered(
    core: &Core,
    txn: &DatabaseTransaction,
    message_id: Uuid,
    channel: Channel,
    now: DateTime<Utc>,
) -> CoreResult<()> {
    tell_host(core, txn, message_id, channel, now, |registration| {
        WebhookEvent::message_delivered(
            registration.id,
            &registration.phone,
            message_id,
            channel,
            now,
        )
    })
    .await
}

/// Queues the event `about` makes of a message to a customer for the host
/// of its registration; nothing for a webhook, or when the registration
/// is gone.
async fn tell_host(
    core: &Core,
    txn: &DatabaseTransaction,
    message_id: Uuid,
    channel: Channel,
    now: DateTime<Utc>,
    about: impl FnOnce(&registration::Model) -> WebhookEvent,
) -> CoreResult<()> {
    if channel == Channel::Webhook {
        return Ok(());
    }
    let Some(registration) = registration_of(txn, message_id).await? else {
        return Ok(());
    };
    let event = about(&registration);
    enqueue_event(&core.keys, txn, registration.host_id, &event, now).await?;
    Ok(())
}

/// The registration an outbox message belongs to, if it is still there.
async fn registration_of(
    txn: &DatabaseTransaction,
    message_id: Uuid,
) -> CoreResult<Option<registration::Model>> {
    let registration_id: Option<Uuid> = outbox_message::Entity::find_by_id(message_id)
        .select_only()
        .column(outbox_message::Column::RegistrationId)
        .into_tuple()
        .one(txn)
        .await
        .context("Failed to load the message")?;
    let Some(registration_id) = registration_id else {
        return Ok(None);
    };
    Ok(registration::Entity::find_by_id(registration_id)
        .one(txn)
        .await
        .context("Failed to load the message's registration")?)
}

/// What the delivery loop needs to send one webhook.
pub struct WebhookSend {
    /// The endpoint's URL now (it may have changed since the event).
    pub url: String,
    /// The `webhook-id` header.
    pub webhook_id: String,
    pub secret: SecretString,
}

/// How to send the webhook message, or `None` when it must not go out: its
/// endpoint was disabled or removed, or its host disabled.
pub async fn prepare_send(core: &Core, message_id: Uuid) -> CoreResult<Option<WebhookSend>> {
    let Some(delivery) = webhook_delivery::Entity::find_by_id(message_id)
        .one(&core.db)
        .await
        .context("Failed to load the webhook delivery")?
    else {
        return Ok(None);
    };
    let host_enabled = host::Entity::find_by_id(delivery.host_id)
        .filter(host::Column::DisabledAt.is_null())
        .one(&core.db)
        .await
        .context("Failed to look up the webhook's host")?
        .is_some();
    if !host_enabled {
        return Ok(None);
    }
    let Some(endpoint) = enabled_endpoint(&core.db, delivery.host_id).await? else {
        return Ok(None);
    };
    let secret = core
        .keys
        .open(delivery.host_id.as_bytes(), &endpoint.secret)?;
    Ok(Some(WebhookSend {
        url: endpoint.url,
        webhook_id: delivery.webhook_id,
        secret: SecretString::from(secret),
    }))
}
