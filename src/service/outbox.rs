//! The outbox, and the only module that touches its tables: enqueueing in
//! the caller's transaction, claiming with a lease, recording each result,
//! requeueing dead messages, listing and the delivery timeline.
//! `delivery` holds the transports and the loop that calls this module.
use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use entity::{
    delivery_attempt, outbox_message,
    states::{AttemptOutcome, Channel, ErrorClass, OutboxStatus},
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait, sea_query::Expr,
};
use uuid::Uuid;

use crate::templates::RenderedEmail;
use crate::{
    error::{CoreError, CoreResult},
    state::Core,
};

/// How long a claimed message stays reserved for one dispatcher; if that
/// instance dies mid-send another picks the message up afterwards.
const LEASE: Duration = Duration::seconds(60);

pub async fn enqueue_sms(
    txn: &DatabaseTransaction,
    registration_id: Uuid,
    phone: &str,
    text: String,
    now: DateTime<Utc>,
) -> CoreResult<()> {
    enqueue(
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
}

pub async fn enqueue_email(
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
}

#[allow(clippy::too_many_arguments)]
async fn enqueue(
    txn: &DatabaseTransaction,
    registration_id: Uuid,
    channel: Channel,
    recipient: &str,
    subject: Option<String>,
    body: String,
    html_body: Option<String>,
    now: DateTime<Utc>,
) -> CoreResult<()> {
    outbox_message::Entity::insert(outbox_message::ActiveModel {
        id: Set(Uuid::now_v7()),
        registration_id: Set(registration_id),
        channel: Set(channel),
        recipient: Set(recipient.to_owned()),
        subject: Set(subject),
        body: Set(Some(body)),
        html_body: Set(html_body),
        status: Set(OutboxStatus::Pending),
        attempts: Set(0),
        next_attempt_at: Set(now),
        lease_until: Set(None),
        last_error: Set(None),
        last_error_class: Set(None),
        provider_message_id: Set(None),
        created_at: Set(now),
        sent_at: Set(None),
    })
    .exec(txn)
    .await
    .with_context(|| format!("Failed to queue {}", channel.name()))?;
    Ok(())
}

/// A message this instance holds the lease on, ready to send.
#[derive(Debug, Clone)]
pub struct ClaimedMessage {
    pub id: Uuid,
    pub channel: Channel,
    pub recipient: String,
    pub subject: Option<String>,
    pub body: String,
    pub html_body: Option<String>,
    /// Tries before this one.
    pub attempts: i32,
}

/// How one send went, as the transport reported it.
pub enum SendResult {
    Sent { provider_message_id: String },
    Failed { class: ErrorClass, error: String },
}

/// What recording a result did to the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Sent,
    /// Another try is scheduled.
    Retrying,
    Dead,
}

fn lease_free(now: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(outbox_message::Column::LeaseUntil.is_null())
        .add(outbox_message::Column::LeaseUntil.lt(now))
}

/// Ids of pending messages due now and not leased, oldest due first.
pub async fn due(core: &Core, now: DateTime<Utc>, limit: u64) -> CoreResult<Vec<Uuid>> {
    Ok(outbox_message::Entity::find()
        .select_only()
        .column(outbox_message::Column::Id)
        .filter(outbox_message::Column::Status.eq(OutboxStatus::Pending))
        .filter(outbox_message::Column::NextAttemptAt.lte(now))
        .filter(lease_free(now))
        .order_by_asc(outbox_message::Column::NextAttemptAt)
        .limit(limit)
        .into_tuple()
        .all(&core.db)
        .await
        .context("Failed to list due outbox messages")?)
}

/// Takes the lease on one message. A conditional UPDATE instead of
/// `SELECT ... FOR UPDATE SKIP LOCKED` works the same on SQLite,
/// PostgreSQL and MySQL: of several instances, exactly one gets the row.
pub async fn claim(
    core: &Core,
    id: Uuid,
    now: DateTime<Utc>,
) -> CoreResult<Option<ClaimedMessage>> {
    let claimed = outbox_message::Entity::update_many()
        .col_expr(outbox_message::Column::LeaseUntil, Expr::value(now + LEASE))
        .filter(outbox_message::Column::Id.eq(id))
        .filter(outbox_message::Column::Status.eq(OutboxStatus::Pending))
        .filter(lease_free(now))
        .exec(&core.db)
        .await
        .context("Failed to claim outbox message")?;
    if claimed.rows_affected == 0 {
        return Ok(None);
    }
    let row = outbox_message::Entity::find_by_id(id)
        .one(&core.db)
        .await
        .context("Failed to load outbox message")?
        .ok_or_else(|| anyhow::anyhow!("claimed outbox message {id} vanished"))?;
    Ok(Some(ClaimedMessage {
        id: row.id,
        channel: row.channel,
        recipient: row.recipient,
        subject: row.subject,
        body: row
            .body
            .ok_or_else(|| anyhow::anyhow!("pending outbox message {id} has no body"))?,
        html_body: row.html_body,
        attempts: row.attempts,
    }))
}

/// Stores the result of one send and adds it to the timeline. A failure is
/// retried with backoff until `max_attempts`; a permanent one is dead at once.
pub async fn record_result(
    core: &Core,
    message: &ClaimedMessage,
    result: SendResult,
    now: DateTime<Utc>,
) -> CoreResult<Recorded> {
    let attempts = message.attempts + 1;
    let max = i32::try_from(core.settings.delivery.max_attempts).unwrap_or(i32::MAX);
    let mut attempt = delivery_attempt::ActiveModel {
        id: Set(Uuid::now_v7()),
        message_id: Set(message.id),
        attempted_at: Set(now),
        outcome: Set(AttemptOutcome::Sent),
        error_class: Set(None),
        error: Set(None),
        provider_message_id: Set(None),
    };
    let update = outbox_message::Entity::update_many()
        .col_expr(outbox_message::Column::Attempts, Expr::value(attempts))
        .col_expr(
            outbox_message::Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(outbox_message::Column::Id.eq(message.id));
    let (update, recorded) = match result {
        SendResult::Sent {
            provider_message_id,
        } => {
            attempt.provider_message_id = Set(Some(provider_message_id.clone()));
            let update = update
                .col_expr(
                    outbox_message::Column::Status,
                    Expr::value(OutboxStatus::Sent),
                )
                .col_expr(outbox_message::Column::SentAt, Expr::value(now))
                .col_expr(
                    outbox_message::Column::ProviderMessageId,
                    Expr::value(provider_message_id),
                )
                // The bodies hold a live code or link: keep them no longer than needed.
                .col_expr(
                    outbox_message::Column::Body,
                    Expr::value(Option::<String>::None),
                )
                .col_expr(
                    outbox_message::Column::HtmlBody,
                    Expr::value(Option::<String>::None),
                );
            (update, Recorded::Sent)
        }
        SendResult::Failed { class, error } => {
            let dead = class == ErrorClass::Permanent || attempts >= max;
            attempt.error_class = Set(Some(class));
            attempt.error = Set(Some(error.clone()));
            let update = update
                .col_expr(outbox_message::Column::LastError, Expr::value(error))
                .col_expr(outbox_message::Column::LastErrorClass, Expr::value(class));
            if dead {
                attempt.outcome = Set(AttemptOutcome::Dead);
                let update = update.col_expr(
                    outbox_message::Column::Status,
                    Expr::value(OutboxStatus::Dead),
                );
                (update, Recorded::Dead)
            } else {
                attempt.outcome = Set(AttemptOutcome::Failed);
                let update = update.col_expr(
                    outbox_message::Column::NextAttemptAt,
                    Expr::value(now + backoff(attempts)),
                );
                (update, Recorded::Retrying)
            }
        }
    };
    let txn = core
        .db
        .begin()
        .await
        .context("Failed to begin transaction")?;
    update
        .exec(&txn)
        .await
        .context("Failed to record delivery result")?;
    delivery_attempt::Entity::insert(attempt)
        .exec(&txn)
        .await
        .context("Failed to record delivery attempt")?;
    txn.commit()
        .await
        .context("Failed to commit delivery result")?;
    Ok(recorded)
}

/// Exponential backoff from 2 s, capped at 10 minutes, with jitter so that
/// many failed messages do not retry in lockstep.
pub fn backoff(attempts: i32) -> Duration {
    use rand::Rng;
    let exponent = u32::try_from(attempts.clamp(1, 10)).unwrap_or(1);
    let ceiling_ms = (2_000i64 << (exponent - 1)).min(600_000);
    let jittered = rand::thread_rng().gen_range(ceiling_ms / 2..=ceiling_ms);
    Duration::milliseconds(jittered)
}

/// One outbox message as operators and hosts see it; never its body.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: Uuid,
    pub registration_id: Uuid,
    pub channel: Channel,
    pub status: OutboxStatus,
    pub attempts: i32,
    pub last_error_class: Option<ErrorClass>,
    pub last_error: Option<String>,
    pub queued_at: DateTime<Utc>,
    /// When the next try is due, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
    pub provider_message_id: Option<String>,
}

impl From<outbox_message::Model> for Delivery {
    fn from(m: outbox_message::Model) -> Self {
        Self {
            id: m.id,
            registration_id: m.registration_id,
            channel: m.channel,
            status: m.status,
            attempts: m.attempts,
            last_error_class: m.last_error_class,
            last_error: m.last_error,
            queued_at: m.created_at,
            next_attempt_at: (m.status == OutboxStatus::Pending).then_some(m.next_attempt_at),
            sent_at: m.sent_at,
            provider_message_id: m.provider_message_id,
        }
    }
}

/// One event of a delivery's timeline.
#[derive(Debug, Clone)]
pub struct DeliveryEvent {
    pub at: DateTime<Utc>,
    pub outcome: AttemptOutcome,
    pub error_class: Option<ErrorClass>,
    pub error: Option<String>,
    pub provider_message_id: Option<String>,
}

/// Newest first, optionally only messages in `status`.
pub async fn list(
    core: &Core,
    status: Option<OutboxStatus>,
    limit: u64,
) -> CoreResult<Vec<Delivery>> {
    let mut query = outbox_message::Entity::find()
        .order_by_desc(outbox_message::Column::Id)
        .limit(limit);
    if let Some(status) = status {
        query = query.filter(outbox_message::Column::Status.eq(status));
    }
    let rows = query.all(&core.db).await.context("Failed to list outbox")?;
    Ok(rows.into_iter().map(Delivery::from).collect())
}

/// Puts dead messages back in the queue with a fresh attempt budget; `None`
/// retries every dead message. Returns how many were requeued.
pub async fn retry_dead(core: &Core, id: Option<Uuid>) -> CoreResult<u64> {
    let now = core.clock.now();
    let mut query = outbox_message::Entity::find()
        .select_only()
        .column(outbox_message::Column::Id)
        .filter(outbox_message::Column::Status.eq(OutboxStatus::Dead));
    if let Some(id) = id {
        query = query.filter(outbox_message::Column::Id.eq(id));
    }
    let ids: Vec<Uuid> = query
        .into_tuple()
        .all(&core.db)
        .await
        .context("Failed to find dead messages")?;
    if ids.is_empty() {
        return match id {
            Some(id) => Err(CoreError::field(
                "id",
                "not_found",
                format!("no dead message with id {id}"),
            )),
            None => Ok(0),
        };
    }
    let txn = core
        .db
        .begin()
        .await
        .context("Failed to begin transaction")?;
    let requeued = outbox_message::Entity::update_many()
        .col_expr(
            outbox_message::Column::Status,
            Expr::value(OutboxStatus::Pending),
        )
        .col_expr(outbox_message::Column::Attempts, Expr::value(0))
        .col_expr(outbox_message::Column::NextAttemptAt, Expr::value(now))
        .filter(outbox_message::Column::Id.is_in(ids.clone()))
        .filter(outbox_message::Column::Status.eq(OutboxStatus::Dead))
        .exec(&txn)
        .await
        .context("Failed to requeue dead messages")?;
    delivery_attempt::Entity::insert_many(ids.iter().map(|message_id| {
        delivery_attempt::ActiveModel {
            id: Set(Uuid::now_v7()),
            message_id: Set(*message_id),
            attempted_at: Set(now),
            outcome: Set(AttemptOutcome::Requeued),
            error_class: Set(None),
            error: Set(None),
            provider_message_id: Set(None),
        }
    }))
    .exec(&txn)
    .await
    .context("Failed to record requeue")?;
    txn.commit().await.context("Failed to commit requeue")?;
    core.outbox_signal.notify_one();
    tracing::info!(count = requeued.rows_affected, "dead messages requeued");
    Ok(requeued.rows_affected)
}

/// Every message of each registration, oldest first, for DataLoaders.
pub async fn deliveries_by_registration(
    core: &Core,
    registration_ids: &[Uuid],
) -> CoreResult<HashMap<Uuid, Vec<Delivery>>> {
    let rows = outbox_message::Entity::find()
        .filter(outbox_message::Column::RegistrationId.is_in(registration_ids.iter().copied()))
        .order_by_asc(outbox_message::Column::Id)
        .all(&core.db)
        .await
        .context("Failed to load deliveries")?;
    let mut grouped: HashMap<Uuid, Vec<Delivery>> = HashMap::new();
    for row in rows {
        grouped
            .entry(row.registration_id)
            .or_default()
            .push(row.into());
    }
    Ok(grouped)
}

/// Every event of each message, in order, for DataLoaders.
pub async fn timelines(
    core: &Core,
    message_ids: &[Uuid],
) -> CoreResult<HashMap<Uuid, Vec<DeliveryEvent>>> {
    let rows = delivery_attempt::Entity::find()
        .filter(delivery_attempt::Column::MessageId.is_in(message_ids.iter().copied()))
        .order_by_asc(delivery_attempt::Column::Id)
        .all(&core.db)
        .await
        .context("Failed to load delivery attempts")?;
    let mut grouped: HashMap<Uuid, Vec<DeliveryEvent>> = HashMap::new();
    for row in rows {
        grouped
            .entry(row.message_id)
            .or_default()
            .push(DeliveryEvent {
                at: row.attempted_at,
                outcome: row.outcome,
                error_class: row.error_class,
                error: row.error,
                provider_message_id: row.provider_message_id,
            });
    }
    Ok(grouped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempts in 1..20 {
            let delay = backoff(attempts).num_milliseconds();
            let ceiling = (2_000i64 << (attempts.clamp(1, 10) - 1)).min(600_000);
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{attempts}: {delay}"
            );
        }
    }
}
