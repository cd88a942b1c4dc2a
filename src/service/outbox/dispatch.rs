//! Claiming due messages with a lease and recording how each send went.

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use entity::{
    outbox_message,
    states::{Channel, ErrorClass, OutboxStatus},
};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    UpdateMany, sea_query::Expr,
};
use uuid::Uuid;

use crate::{
    error::CoreResult,
    service::{retrying, write},
    state::Core,
};

/// How long a claimed message stays reserved for one dispatcher; if that
/// instance dies mid-send another picks the message up afterwards.
/// Always longer than a transport may take: the slower transport timeout,
/// twice, plus a margin for recording the result.
fn lease(core: &Core) -> Duration {
    let delivery = &core.settings.delivery;
    let slowest = delivery
        .email
        .smtp
        .timeout_seconds
        .max(delivery.sms.timeout_seconds)
        .max(core.settings.webhooks.timeout_seconds);
    Duration::seconds(
        i64::try_from(slowest)
            .unwrap_or(i64::MAX / 4)
            .saturating_mul(2)
            + 30,
    )
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
    /// Names this claim; the result is recorded only while it holds.
    pub lease_token: Uuid,
    /// The SMS provider it is assigned to (`None`: the first on its route).
    pub provider: Option<String>,
    /// Transient failures on that provider so far.
    pub provider_failures: i32,
}

/// How one send went, as the transport reported it.
pub enum SendResult {
    Sent { provider_message_id: String },
    Failed { class: ErrorClass, error: String },
}

/// The SMS provider a send went through, and what the routing settings
/// (`SmsSettings::failover`) made of its result.
#[derive(Debug, Clone)]
pub struct Carrier {
    pub provider: String,
    /// Transient failures of this message on it, this send included.
    pub failures_here: i32,
    /// Where the message moves after this failed send, at once and with
    /// the same text; `None`: it stays (retried later, or dead).
    pub failover_to: Option<String>,
    /// Sent, but a receipt may still move it on: keep its sealed body
    /// until the final receipt or the code expires.
    pub keep_body: bool,
}

/// What recording a result did to the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Sent,
    /// Another try is scheduled.
    Retrying,
    Dead,
    /// During the send the message was cancelled, or its lease expired
    /// and another dispatcher took it over: its outcome, not ours, stands.
    LeaseLost,
    /// Failed on one SMS provider; queued at once on the next.
    FailedOver,
}

fn lease_free(now: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(outbox_message::Column::LeaseUntil.is_null())
        .add(outbox_message::Column::LeaseUntil.lt(now))
}

/// Pending messages, stated so that the partial index of due messages
/// (`idx_outbox_due_pending`) can serve the query: the status as a constant
/// in the SQL text, not a bound parameter, and a condition on
/// `next_attempt_at` (`when`), which only together imply the index's
/// condition, for PostgreSQL's reusable plans and SQLite's planner alike.
/// A statement that picks messages by id must not use this: through the
/// index it would read every pending entry (migration
/// `m20261204_000001_outbox_due_index`).
pub(super) fn pending_in_due_index(when: sea_orm::sea_query::SimpleExpr) -> Condition {
    let pending = Expr::cust(format!("'{}'", OutboxStatus::Pending.name()));
    Condition::all()
        .add(sea_orm::sea_query::ExprTrait::eq(
            Expr::col(outbox_message::Column::Status),
            pending,
        ))
        .add(when)
}

/// Ids of pending messages due now and not leased, oldest due first.
pub async fn due(core: &Core, now: DateTime<Utc>, limit: u64) -> CoreResult<Vec<Uuid>> {
    Ok(outbox_message::Entity::find()
        .select_only()
        .column(outbox_message::Column::Id)
        .filter(pending_in_due_index(
            outbox_message::Column::NextAttemptAt.lte(now),
        ))
        .filter(lease_free(now))
        .order_by_asc(outbox_message::Column::NextAttemptAt)
        .limit(limit)
        .into_tuple()
        .all(&core.db)
        .await
        .context("Failed to list due outbox messages")?)
}

/// Takes the lease on those of `ids` that are still pending and free, all
/// in one statement under one token, from the moment of this claim: the
/// dispatcher sends them at once, so each lease covers one send. A
/// conditional UPDATE instead of `SELECT ... FOR UPDATE SKIP LOCKED` works
/// the same on SQLite, PostgreSQL and MySQL: of several instances, exactly
/// one gets each row. One statement for the batch, not one per message,
/// because on SQLite every commit is a disk flush that registers wait for.
pub async fn claim_batch(core: &Core, ids: &[Uuid]) -> CoreResult<Vec<ClaimedMessage>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    retrying(core, || claim_batch_once(core, ids)).await
}

async fn claim_batch_once(core: &Core, ids: &[Uuid]) -> CoreResult<Vec<ClaimedMessage>> {
    match take_leases(core, ids).await? {
        Some(lease_token) => leased(core, ids, lease_token).await,
        None => Ok(Vec::new()),
    }
}

/// The first half of a claim: leases those of `ids` still pending and not
/// leased, under one new token; `None` when there were none.
pub async fn take_leases(core: &Core, ids: &[Uuid]) -> CoreResult<Option<Uuid>> {
    let turn = write::delivery_turn(core).await;
    take_leases_on(core, turn.db(), ids).await
}

/// [`take_leases`] on `db`: the caller's transaction, when a claim rides
/// on the writer's turn that records results (`record_results_and_claim`).
pub(super) async fn take_leases_on(
    core: &Core,
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> CoreResult<Option<Uuid>> {
    if ids.is_empty() {
        return Ok(None);
    }
    let now = core.clock.now();
    let lease_token = Uuid::new_v4();
    let claimed = outbox_message::Entity::update_many()
        .col_expr(
            outbox_message::Column::LeaseUntil,
            Expr::value(now + lease(core)),
        )
        .col_expr(outbox_message::Column::LeaseToken, Expr::value(lease_token))
        .filter(outbox_message::Column::Id.is_in(ids.iter().copied()))
        .filter(outbox_message::Column::Status.eq(OutboxStatus::Pending))
        .filter(lease_free(now))
        .exec(db)
        .await
        .context("Failed to claim outbox messages")?;
    Ok((claimed.rows_affected > 0).then_some(lease_token))
}

/// The second half: the messages leased under `lease_token` that are still
/// pending. A message cancelled since it was leased (a resend replaced its
/// code, the registration completed) has lost its body with its status and
/// must not go out: it is left out, and the rest of the batch goes.
pub async fn leased(
    core: &Core,
    ids: &[Uuid],
    lease_token: Uuid,
) -> CoreResult<Vec<ClaimedMessage>> {
    // By id first: the primary key finds the rows, the token picks ours.
    let rows = outbox_message::Entity::find()
        .filter(outbox_message::Column::Id.is_in(ids.iter().copied()))
        .filter(outbox_message::Column::LeaseToken.eq(lease_token))
        .filter(outbox_message::Column::Status.eq(OutboxStatus::Pending))
        .order_by_asc(outbox_message::Column::NextAttemptAt)
        .all(&core.db)
        .await
        .context("Failed to load claimed outbox messages")?;
    rows.into_iter()
        .map(|row| opened(core, row, lease_token))
        .collect()
}

/// A claimed row with its sealed bodies opened.
fn opened(
    core: &Core,
    row: outbox_message::Model,
    lease_token: Uuid,
) -> CoreResult<ClaimedMessage> {
    let id = row.id;
    Ok(ClaimedMessage {
        id,
        channel: row.channel,
        recipient: row.recipient,
        subject: row.subject,
        body: core.keys.open(
            id.as_bytes(),
            &row.body
                .ok_or_else(|| anyhow::anyhow!("pending outbox message {id} has no body"))?,
        )?,
        html_body: row
            .html_body
            .map(|html| core.keys.open(id.as_bytes(), &html))
            .transpose()?,
        attempts: row.attempts,
        lease_token,
        provider: row.provider,
        provider_failures: row.provider_failures,
    })
}

/// The bodies hold a live code or link: once a message is sent, dead or
/// cancelled, nothing may read them any more.
pub(super) fn erase_bodies(
    update: UpdateMany<outbox_message::Entity>,
) -> UpdateMany<outbox_message::Entity> {
    update
        .col_expr(
            outbox_message::Column::Body,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            outbox_message::Column::HtmlBody,
            Expr::value(Option::<String>::None),
        )
}
