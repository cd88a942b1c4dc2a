//! What operators and hosts read of the outbox, and the operator's requeue.
use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use entity::{
    delivery_attempt, outbox_message,
    states::{AttemptOutcome, Channel, ErrorClass, OutboxStatus},
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::Expr,
};
use uuid::Uuid;

use crate::{
    error::{CoreError, CoreResult},
    service::write,
    state::{Core, Waiting},
};

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
    /// The SMS provider carrying it (or that carried it last).
    pub provider: Option<String>,
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
            provider: m.provider,
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
    /// The SMS provider of the attempt or receipt.
    pub provider: Option<String>,
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
/// retries every dead message. Returns how many were requeued. Only those
/// that died before bodies were erased at death still have a text to send;
/// for the others a host asks for a resend, which issues a new code or link.
pub async fn retry_dead(core: &Core, id: Option<Uuid>) -> CoreResult<u64> {
    let now = core.clock.now();
    let mut query = outbox_message::Entity::find()
        .select_only()
        .column(outbox_message::Column::Id)
        .filter(outbox_message::Column::Status.eq(OutboxStatus::Dead))
        .filter(outbox_message::Column::Body.is_not_null());
    if let Some(id) = id {
        query = query.filter(outbox_message::Column::Id.eq(id));
    }
    let ids: Vec<Uuid> = query
        .into_tuple()
        .all(&core.db)
        .await
        .context("Failed to find dead messages")?;
    if ids.is_empty() {
        let Some(id) = id else {
            return Ok(0);
        };
        let dead = outbox_message::Entity::find_by_id(id)
            .filter(outbox_message::Column::Status.eq(OutboxStatus::Dead))
            .one(&core.db)
            .await
            .context("Failed to look up the message")?;
        return Err(match dead {
            Some(_) => CoreError::field(
                "id",
                "content_erased",
                format!(
                    "message {id} died and its code or link was erased with it; ask for a resend instead"
                ),
            ),
            None => CoreError::field("id", "not_found", format!("no dead message with id {id}")),
        });
    }
    let txn = write::begin(core).await?;
    let requeued = outbox_message::Entity::update_many()
        .col_expr(
            outbox_message::Column::Status,
            Expr::value(OutboxStatus::Pending),
        )
        .col_expr(outbox_message::Column::Attempts, Expr::value(0))
        .col_expr(outbox_message::Column::NextAttemptAt, Expr::value(now))
        // A fresh start: from the first provider on the route again.
        .col_expr(
            outbox_message::Column::Provider,
            Expr::value(Option::<String>::None),
        )
        .col_expr(outbox_message::Column::ProviderFailures, Expr::value(0))
        .filter(outbox_message::Column::Id.is_in(ids.clone()))
        .filter(outbox_message::Column::Status.eq(OutboxStatus::Dead))
        .exec(&*txn)
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
            provider: Set(None),
        }
    }))
    .exec(&*txn)
    .await
    .context("Failed to record requeue")?;
    write::commit(txn).await?;
    core.outbox_signal.notify_one();
    tracing::info!(count = requeued.rows_affected, "dead messages requeued");
    Ok(requeued.rows_affected)
}

/// Every message to the customer of each registration, oldest first, for
/// DataLoaders (the host's webhooks are listed apart).
pub async fn deliveries_by_registration(
    core: &Core,
    registration_ids: &[Uuid],
) -> CoreResult<HashMap<Uuid, Vec<Delivery>>> {
    let rows = outbox_message::Entity::find()
        .filter(outbox_message::Column::RegistrationId.is_in(registration_ids.iter().copied()))
        .filter(outbox_message::Column::Channel.is_in(Channel::TO_CUSTOMER))
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

/// The timeline's rows of each message, in order, for DataLoaders: every
/// event but the send its message holds, which [`Delivery::timeline`] adds.
pub async fn timeline_rows(
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
                provider: row.provider,
            });
    }
    Ok(grouped)
}

impl Delivery {
    /// The send that went through as the message holds it, while it does
    /// (`OutboxStatus::holds_its_send`). Since migration `m20261207_000001`
    /// it is no row of its own (docs/PERFORMANCE.md, session 48).
    fn held_send(&self) -> Option<DeliveryEvent> {
        let at = self.sent_at.filter(|_| self.status.holds_its_send())?;
        Some(DeliveryEvent {
            at,
            outcome: AttemptOutcome::Sent,
            error_class: None,
            error: None,
            provider_message_id: self.provider_message_id.clone(),
            provider: self.provider.clone(),
        })
    }

    /// The whole timeline from its rows ([`timeline_rows`]): the send the
    /// message holds put in its place, after what came before it and
    /// before the receipts about it (at the same moment, too). Left out
    /// when a row has it already: every send was a row before migration
    /// `m20261207_000001`.
    pub fn timeline(&self, mut rows: Vec<DeliveryEvent>) -> Vec<DeliveryEvent> {
        let Some(send) = self.held_send() else {
            return rows;
        };
        let about_it = |event: &DeliveryEvent| {
            event.provider_message_id == send.provider_message_id && event.provider == send.provider
        };
        if rows
            .iter()
            .any(|event| event.outcome == AttemptOutcome::Sent && about_it(event))
        {
            return rows;
        }
        let place = rows
            .iter()
            .position(|event| {
                event.at > send.at
                    || (event.at == send.at && event.outcome.is_receipt() && about_it(event))
            })
            .unwrap_or(rows.len());
        rows.insert(place, send);
        rows
    }
}

/// The statement behind [`waiting_by_channel`]: per channel, the number of
/// messages waiting and when the oldest was queued, in one pass over the
/// index of due messages. Counting beside the minimum keeps planners off
/// the minimum's shortcut, an ordered walk of `idx_outbox_created` from the
/// oldest message kept, which with statistics taken while a backlog
/// waited reads the whole retained history on every scrape.
pub fn waiting_by_channel_query() -> sea_orm::Select<outbox_message::Entity> {
    outbox_message::Entity::find()
        .select_only()
        .column(outbox_message::Column::Channel)
        .column_as(outbox_message::Column::Id.count(), "waiting")
        .column_as(outbox_message::Column::CreatedAt.min(), "oldest")
        .filter(super::dispatch::pending_in_due_index(
            outbox_message::Column::NextAttemptAt.is_not_null(),
        ))
        .group_by(outbox_message::Column::Channel)
}

/// Per channel: how many messages wait to be sent and since when the oldest
/// (every channel, those with none waiting at zero).
pub async fn waiting_by_channel(core: &Core) -> CoreResult<Waiting> {
    let found: Waiting = waiting_by_channel_query()
        .into_tuple()
        .all(&core.db)
        .await
        .context("Failed to count waiting messages")?;
    Ok(Channel::ALL
        .into_iter()
        .map(|channel| {
            found
                .iter()
                .find(|(of, _, _)| *of == channel)
                .copied()
                .unwrap_or((channel, 0, None))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, 8, 0, second).unwrap()
    }

    fn event(second: u32, outcome: AttemptOutcome, id: Option<&str>) -> DeliveryEvent {
        DeliveryEvent {
            at: at(second),
            outcome,
            error_class: None,
            error: None,
            provider_message_id: id.map(str::to_owned),
            provider: Some("a".to_owned()),
        }
    }

    fn message(status: OutboxStatus, sent: Option<(u32, &str)>) -> Delivery {
        Delivery {
            id: Uuid::nil(),
            registration_id: Uuid::nil(),
            channel: Channel::Sms,
            status,
            attempts: 1,
            last_error_class: None,
            last_error: None,
            queued_at: at(0),
            next_attempt_at: None,
            sent_at: sent.map(|(second, _)| at(second)),
            provider_message_id: sent.map(|(_, id)| id.to_owned()),
            provider: Some("a".to_owned()),
        }
    }

    fn outcomes(timeline: &[DeliveryEvent]) -> Vec<(u32, AttemptOutcome, Option<&str>)> {
        use chrono::Timelike;
        timeline
            .iter()
            .map(|e| (e.at.second(), e.outcome, e.provider_message_id.as_deref()))
            .collect()
    }

    #[test]
    fn the_held_send_goes_after_what_came_before_and_before_its_receipts() {
        use AttemptOutcome::*;
        let rows = vec![
            event(1, Failed, None),
            event(2, Failed, None),
            event(2, Delivered, Some("x")),
            event(3, Delivered, Some("x")),
        ];
        let timeline = message(OutboxStatus::Delivered, Some((2, "x"))).timeline(rows);
        assert_eq!(
            outcomes(&timeline),
            [
                (1, Failed, None),
                (2, Failed, None),
                (2, Sent, Some("x")),
                (2, Delivered, Some("x")),
                (3, Delivered, Some("x"))
            ]
        );
        let alone = message(OutboxStatus::Sent, Some((5, "y"))).timeline(Vec::new());
        assert_eq!(outcomes(&alone), [(5, Sent, Some("y"))]);
    }

    #[test]
    fn a_send_moved_on_from_is_a_row_and_the_held_one_comes_after_it() {
        use AttemptOutcome::*;
        // Sent as x, undelivered, sent again elsewhere as y, all at once.
        let rows = vec![event(1, Sent, Some("x")), event(1, Undelivered, Some("x"))];
        let timeline = message(OutboxStatus::Sent, Some((1, "y"))).timeline(rows.clone());
        assert_eq!(
            outcomes(&timeline),
            [
                (1, Sent, Some("x")),
                (1, Undelivered, Some("x")),
                (1, Sent, Some("y"))
            ]
        );
        // Pending again after the receipt: the message holds no send, even
        // though it still has the one it moved on from.
        let pending = message(OutboxStatus::Pending, Some((1, "x"))).timeline(rows.clone());
        assert_eq!(outcomes(&pending), outcomes(&rows));
    }

    #[test]
    fn a_send_already_a_row_is_not_added_twice() {
        use AttemptOutcome::*;
        // Written before the migration: the send is a row.
        let rows = vec![event(1, Sent, Some("x")), event(2, Delivered, Some("x"))];
        let timeline = message(OutboxStatus::Delivered, Some((1, "x"))).timeline(rows);
        assert_eq!(
            outcomes(&timeline),
            [(1, Sent, Some("x")), (2, Delivered, Some("x"))]
        );
    }
}
