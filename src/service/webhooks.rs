//! Signed webhooks to hosts: the endpoint a host registers, the events
//! queued for it, its listing and replays. Events go out through the outbox
//! (channel `webhook`) with its retries, backoff, leases and dead letters;
//! `enqueue_event` runs in the caller's transaction, so an event exists
//! exactly when the change it reports committed. This module owns the
//! `webhook_endpoint` and `webhook_delivery` tables.
use anyhow::Context;
use chrono::{DateTime, Utc};
use entity::{
    host, outbox_message, registration,
    states::{Channel, ErrorClass, OutboxStatus},
    webhook_delivery, webhook_endpoint,
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, sea_query::OnConflict,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    crypto::{Keys, generate_webhook_secret},
    domain::{BudgetMonth, MonthlySmsBudget, WARNING_PERCENT, WebhookUrl},
    error::{CoreError, CoreResult, FieldError},
    service::{hosts::AuthenticatedHost, outbox, write},
    state::Core,
};

/// What happened, as the payload's `type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// A registration was created (or replaced an earlier one) and its
    /// messages are queued.
    RegistrationStarted,
    /// The customer confirmed; the customer exists.
    RegistrationCompleted,
    /// Wrong codes locked the registration, or the phone at this host.
    RegistrationLocked,
    /// The customer's phone or mailbox got a message (from a receipt).
    MessageDelivered,
    /// A message to the customer was given up on (dead-lettered).
    MessageFailed,
    /// The host's SMS this month reached 80 % of its monthly budget.
    HostBudgetWarning,
}

impl EventType {
    pub fn name(self) -> &'static str {
        match self {
            EventType::RegistrationStarted => "registration.started",
            EventType::RegistrationCompleted => "registration.completed",
            EventType::RegistrationLocked => "registration.locked",
            EventType::MessageDelivered => "message.delivered",
            EventType::MessageFailed => "message.failed",
            EventType::HostBudgetWarning => "host.budget_warning",
        }
    }
}

/// Why wrong codes locked a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockReason {
    /// The registration used up its wrong codes (`max_wrong_codes`).
    AttemptsExhausted,
    /// The phone is refused to this host for a while (`phone_lock_*`).
    PhoneLocked,
}

/// One event for a host. Payloads name the registration, the customer's
/// phone (the username) and the status; never a code, password or link.
#[derive(Debug, Clone)]
pub struct WebhookEvent {
    pub kind: EventType,
    pub registration_id: Uuid,
    pub at: DateTime<Utc>,
    data: Value,
}

impl WebhookEvent {
    pub fn registration_started(registration_id: Uuid, phone: &str, at: DateTime<Utc>) -> Self {
        Self::registration(EventType::RegistrationStarted, registration_id, phone, at)
            .with("status", json!("pending"))
    }

    pub fn registration_completed(
        registration_id: Uuid,
        phone: &str,
        customer_id: Uuid,
        at: DateTime<Utc>,
    ) -> Self {
        Self::registration(EventType::RegistrationCompleted, registration_id, phone, at)
            .with("status", json!("completed"))
            .with("customerId", json!(customer_id))
    }

    pub fn registration_locked(
        registration_id: Uuid,
        phone: &str,
        reason: LockReason,
        at: DateTime<Utc>,
    ) -> Self {
        let reason = match reason {
            LockReason::AttemptsExhausted => "attempts_exhausted",
            LockReason::PhoneLocked => "phone_locked",
        };
        Self::registration(EventType::RegistrationLocked, registration_id, phone, at)
            .with("status", json!("locked"))
            .with("reason", json!(reason))
    }

    /// For the delivery receipts: the customer received the message.
    pub fn message_delivered(
        registration_id: Uuid,
        phone: &str,
        message_id: Uuid,
        channel: Channel,
        at: DateTime<Utc>,
    ) -> Self {
        Self::registration(EventType::MessageDelivered, registration_id, phone, at)
            .with("messageId", json!(message_id))
            .with("channel", json!(channel.name()))
            .with("status", json!("delivered"))
    }

    /// A message to the customer was dead-lettered. `error` is the stored,
    /// credential-free transport error.
    pub fn message_failed(
        registration_id: Uuid,
        phone: &str,
        message_id: Uuid,
        channel: Channel,
        class: ErrorClass,
        error: &str,
        at: DateTime<Utc>,
    ) -> Self {
        Self::registration(EventType::MessageFailed, registration_id, phone, at)
            .with("messageId", json!(message_id))
            .with("channel", json!(channel.name()))
            .with("status", json!("failed"))
            .with("errorClass", json!(class.name()))
            .with("error", json!(error))
    }

    /// Carried by the outbox with the registration whose SMS crossed the
    /// warning share; the payload is about the host's month only.
    pub fn budget_warning(
        registration_id: Uuid,
        month: BudgetMonth,
        budget: MonthlySmsBudget,
        sms_queued: u32,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            kind: EventType::HostBudgetWarning,
            registration_id,
            at,
            data: json!({
                "month": month.label(),
                "monthlySmsBudget": budget.sms(),
                "smsQueued": sms_queued,
                "warningPercent": WARNING_PERCENT,
                "renewsAt": month.ends_at().to_rfc3339(),
            }),
        }
    }

    fn registration(
        kind: EventType,
        registration_id: Uuid,
        phone: &str,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            kind,
            registration_id,
            at,
            data: json!({"registrationId": registration_id, "username": phone}),
        }
    }

    fn with(mut self, key: &str, value: Value) -> Self {
        if let Value::Object(map) = &mut self.data {
            map.insert(key.to_owned(), value);
        }
        self
    }

    /// The JSON body sent: `{"type", "timestamp", "data"}`.
    pub fn payload(&self) -> String {
        json!({
            "type": self.kind.name(),
            "timestamp": self.at.to_rfc3339(),
            "data": self.data,
        })
        .to_string()
    }
}

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
/// read with [`enabled_endpoint_url`] before its transaction (register
/// does, in its pre-checks, to keep the lookup out of the write).
pub async fn enqueue_event_to(
    keys: &Keys,
    txn: &DatabaseTransaction,
    url: &str,
    host_id: Uuid,
    event: &WebhookEvent,
    now: DateTime<Utc>,
) -> CoreResult<Uuid> {
    let payload = event.payload();
    let id = outbox::enqueue_webhook(keys, txn, event.registration_id, url, payload.clone(), now)
        .await?;
    record_delivery(
        keys,
        txn,
        id,
        host_id,
        &format!("msg_{}", id.simple()),
        event.kind.name(),
        &payload,
        now,
    )
    .await?;
    Ok(id)
}

#[allow(clippy::too_many_arguments)]
async fn record_delivery(
    keys: &Keys,
    txn: &DatabaseTransaction,
    message_id: Uuid,
    host_id: Uuid,
    webhook_id: &str,
    event_type: &str,
    payload: &str,
    now: DateTime<Utc>,
) -> CoreResult<()> {
    webhook_delivery::Entity::insert(webhook_delivery::ActiveModel {
        message_id: Set(message_id),
        host_id: Set(host_id),
        webhook_id: Set(webhook_id.to_owned()),
        event_type: Set(event_type.to_owned()),
        payload: Set(keys.seal(message_id.as_bytes(), payload)),
        created_at: Set(now),
    })
    .exec(txn)
    .await
    .context("Failed to record a webhook delivery")?;
    Ok(())
}

/// The URL of the host's enabled endpoint, as a query returning at most one
/// row, for a caller that reads it together with other things.
pub fn enabled_endpoint_url(host_id: Uuid) -> sea_orm::sea_query::SelectStatement {
    sea_orm::sea_query::Query::select()
        .column(webhook_endpoint::Column::Url)
        .from(webhook_endpoint::Entity)
        .and_where(webhook_endpoint::Column::HostId.eq(host_id))
        .and_where(webhook_endpoint::Column::DisabledAt.is_null())
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
    if channel == Channel::Webhook {
        return Ok(());
    }
    let Some(registration) = registration_of(txn, message_id).await? else {
        return Ok(());
    };
    let event = WebhookEvent::message_failed(
        registration.id,
        &registration.phone,
        message_id,
        channel,
        class,
        error,
        now,
    );
    enqueue_event(&core.keys, txn, registration.host_id, &event, now).await?;
    Ok(())
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
    if channel == Channel::Webhook {
        return Ok(());
    }
    let Some(registration) = registration_of(txn, message_id).await? else {
        return Ok(());
    };
    let event = WebhookEvent::message_delivered(
        registration.id,
        &registration.phone,
        message_id,
        channel,
        now,
    );
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

/// Shown once, when an endpoint is registered: only a sealed copy is kept.
pub struct NewEndpoint {
    pub url: String,
    pub secret: SecretString,
}

/// Registers (or replaces) the host's endpoint with a new signing secret,
/// and enables it. Events queued before go to the new URL, signed with the
/// new secret.
pub async fn set_endpoint(core: &Core, host_name: &str, url: &str) -> CoreResult<NewEndpoint> {
    let url = WebhookUrl::parse(url)
        .map_err(|invalid| CoreError::Validation(vec![FieldError::on("url", invalid)]))?;
    let host = super::hosts::find_by_name(core, host_name).await?;
    let secret = generate_webhook_secret();
    let row = webhook_endpoint::ActiveModel {
        host_id: Set(host.id),
        url: Set(url.as_str().to_owned()),
        secret: Set(core.keys.seal(host.id.as_bytes(), secret.expose_secret())),
        created_at: Set(core.clock.now()),
        disabled_at: Set(None),
    };
    webhook_endpoint::Entity::insert(row)
        .on_conflict(
            OnConflict::column(webhook_endpoint::Column::HostId)
                .update_columns([
                    webhook_endpoint::Column::Url,
                    webhook_endpoint::Column::Secret,
                    webhook_endpoint::Column::CreatedAt,
                    webhook_endpoint::Column::DisabledAt,
                ])
                .to_owned(),
        )
        .exec(&core.db)
        .await
        .context("Failed to store the webhook endpoint")?;
    tracing::info!(host = %host.name, "webhook endpoint set");
    Ok(NewEndpoint {
        url: url.as_str().to_owned(),
        secret,
    })
}

/// Stops events to the host's endpoint: none are queued any more, and
/// those queued die at their next try. Returns whether it was enabled.
pub async fn disable_endpoint(core: &Core, host_name: &str) -> CoreResult<bool> {
    let host = super::hosts::find_by_name(core, host_name).await?;
    let exists = webhook_endpoint::Entity::find_by_id(host.id)
        .one(&core.db)
        .await
        .context("Failed to look up the webhook endpoint")?
        .is_some();
    if !exists {
        return Err(CoreError::field(
            "name",
            "no_webhook",
            format!("host {host_name} has no webhook endpoint"),
        ));
    }
    let disabled = webhook_endpoint::Entity::update_many()
        .col_expr(
            webhook_endpoint::Column::DisabledAt,
            sea_orm::sea_query::Expr::value(core.clock.now()),
        )
        .filter(webhook_endpoint::Column::HostId.eq(host.id))
        .filter(webhook_endpoint::Column::DisabledAt.is_null())
        .exec(&core.db)
        .await
        .context("Failed to disable the webhook endpoint")?;
    tracing::info!(host = %host.name, "webhook endpoint disabled");
    Ok(disabled.rows_affected > 0)
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
    let message_id = outbox::enqueue_webhook(
        &core.keys,
        &txn,
        registration_id,
        &endpoint.url,
        payload.clone(),
        now,
    )
    .await?;
    record_delivery(
        &core.keys,
        &txn,
        message_id,
        host.id,
        &original.webhook_id,
        &original.event_type,
        &payload,
        now,
    )
    .await?;
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
