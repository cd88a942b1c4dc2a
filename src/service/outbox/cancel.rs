//! Withdrawing queued messages that must not go out any more, with a
//! timeline entry saying why. Their bodies are erased in the same update.
use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use entity::{
    delivery_attempt, outbox_message, registration,
    states::{AttemptOutcome, Channel, OutboxStatus},
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use super::dispatch::erase_bodies;
use crate::error::CoreResult;

/// Why queued messages were withdrawn; shown in the delivery timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// A newer registration, code or link replaced the one it carries.
    Superseded,
    /// The registration completed; its code and link are of no use.
    Completed,
    /// Its code or link expired before it could be sent.
    Expired,
    HostDisabled,
}

impl CancelReason {
    pub fn describe(self) -> &'static str {
        match self {
            CancelReason::Superseded => "replaced by a newer code or link before it was sent",
            CancelReason::Completed => "the registration completed before it was sent",
            CancelReason::Expired => "its code or link expired before it could be sent",
            CancelReason::HostDisabled => "the host was disabled before it was sent",
        }
    }
}

/// Cancels the registrations' queued messages (of one channel, or all that
/// go to the customer), in the caller's transaction. Returns how many were
/// cancelled. Webhooks are left alone unless named: a completed or replaced
/// registration is exactly what the host still wants to hear about.
pub async fn cancel_pending(
    db: &impl ConnectionTrait,
    registration_ids: &[Uuid],
    channel: Option<Channel>,
    reason: CancelReason,
    now: DateTime<Utc>,
) -> CoreResult<u64> {
    if registration_ids.is_empty() {
        return Ok(0);
    }
    let channels = match channel {
        Some(channel) => vec![channel],
        None => Channel::TO_CUSTOMER.to_vec(),
    };
    // One read finds both what is to be cancelled and what went out with its
    // body kept: usually neither, and then that read is all a cancel costs
    // (a confirm, a resend).
    let found: Vec<(Uuid, OutboxStatus)> = outbox_message::Entity::find()
        .select_only()
        .column(outbox_message::Column::Id)
        .column(outbox_message::Column::Status)
        .filter(outbox_message::Column::RegistrationId.is_in(registration_ids.iter().copied()))
        .filter(outbox_message::Column::Channel.is_in(channels))
        .filter(
            Condition::any()
                .add(outbox_message::Column::Status.eq(OutboxStatus::Pending))
                .add(
                    Condition::all()
                        .add(outbox_message::Column::Status.eq(OutboxStatus::Sent))
                        .add(outbox_message::Column::Body.is_not_null()),
                ),
        )
        .into_tuple()
        .all(db)
        .await
        .context("Failed to find queued messages to cancel")?;
    let (pending, kept): (Vec<_>, Vec<_>) = found
        .into_iter()
        .partition(|(_, status)| *status == OutboxStatus::Pending);
    if !kept.is_empty() {
        erase_kept_bodies_of(db, kept.into_iter().map(|(id, _)| id).collect()).await?;
    }
    cancel_messages(
        db,
        pending.into_iter().map(|(id, _)| id).collect(),
        reason,
        now,
    )
    .await
}

/// Cancels every queued message of the host's registrations.
pub async fn cancel_for_host(
    db: &impl ConnectionTrait,
    host_id: Uuid,
    now: DateTime<Utc>,
) -> CoreResult<u64> {
    let registrations: Vec<Uuid> = registration::Entity::find()
        .select_only()
        .column(registration::Column::Id)
        .filter(registration::Column::HostId.eq(host_id))
        .into_tuple()
        .all(db)
        .await
        .context("Failed to list the host's registrations")?;
    let mut cancelled = 0;
    // Bounded IN lists: a large host has many registrations.
    for chunk in registrations.chunks(500) {
        cancelled += cancel_pending(db, chunk, None, CancelReason::HostDisabled, now).await?;
    }
    Ok(cancelled)
}

/// Cancels queued messages whose code or link has expired: SMS older than
/// `code_expiry`, emails older than `link_expiry`.
pub async fn cancel_expired(
    db: &impl ConnectionTrait,
    code_expiry: Duration,
    link_expiry: Duration,
    now: DateTime<Utc>,
) -> CoreResult<u64> {
    let mut cancelled = 0;
    for (channel, expiry) in [(Channel::Sms, code_expiry), (Channel::Email, link_expiry)] {
        let ids: Vec<Uuid> = outbox_message::Entity::find()
            .select_only()
            .column(outbox_message::Column::Id)
            .filter(outbox_message::Column::Status.eq(OutboxStatus::Pending))
            .filter(outbox_message::Column::Channel.eq(channel))
            .filter(outbox_message::Column::CreatedAt.lt(now - expiry))
            .into_tuple()
            .all(db)
            .await
            .context("Failed to find expired queued messages")?;
        cancelled += cancel_messages(db, ids, CancelReason::Expired, now).await?;
        erase_kept_bodies(
            db,
            outbox_message::Entity::update_many()
                .filter(outbox_message::Column::Channel.eq(channel))
                .filter(outbox_message::Column::CreatedAt.lt(now - expiry)),
        )
        .await?;
    }
    Ok(cancelled)
}

async fn erase_kept_bodies_of(db: &impl ConnectionTrait, ids: Vec<Uuid>) -> CoreResult<()> {
    erase_kept_bodies(
        db,
        outbox_message::Entity::update_many().filter(outbox_message::Column::Id.is_in(ids)),
    )
    .await
}

/// A sent SMS keeps its sealed body while an undelivered receipt may still
/// move it to another provider. Once its code is replaced, used or expired
/// that must not happen: erasing the body makes such a receipt final.
async fn erase_kept_bodies(
    db: &impl ConnectionTrait,
    messages: sea_orm::UpdateMany<outbox_message::Entity>,
) -> CoreResult<()> {
    erase_bodies(messages)
        .filter(outbox_message::Column::Status.eq(OutboxStatus::Sent))
        .filter(outbox_message::Column::Body.is_not_null())
        .exec(db)
        .await
        .context("Failed to erase the bodies of sent messages")?;
    Ok(())
}

/// Cancels the messages still pending, erasing their bodies, and records
/// one timeline entry for each message this call cancelled.
async fn cancel_messages(
    db: &impl ConnectionTrait,
    ids: Vec<Uuid>,
    reason: CancelReason,
    now: DateTime<Utc>,
) -> CoreResult<u64> {
    let mut cancelled = 0;
    for id in ids {
        // One by one, so the timeline names exactly the messages this call
        // withdrew, not one a dispatcher sent in the meantime.
        let updated = erase_bodies(outbox_message::Entity::update_many())
            .col_expr(
                outbox_message::Column::Status,
                Expr::value(OutboxStatus::Cancelled),
            )
            .filter(outbox_message::Column::Id.eq(id))
            .filter(outbox_message::Column::Status.eq(OutboxStatus::Pending))
            .exec(db)
            .await
            .context("Failed to cancel a queued message")?;
        if updated.rows_affected == 0 {
            // A dispatcher sent it since it was read: if it kept the body
            // for a receipt, the body goes now, as it would have had the
            // message been sent before the read.
            erase_kept_bodies_of(db, vec![id]).await?;
            continue;
        }
        delivery_attempt::Entity::insert(delivery_attempt::ActiveModel {
            id: Set(Uuid::now_v7()),
            message_id: Set(id),
            attempted_at: Set(now),
            outcome: Set(AttemptOutcome::Cancelled),
            error_class: Set(None),
            error: Set(Some(reason.describe().to_owned())),
            provider_message_id: Set(None),
            provider: Set(None),
        })
        .exec(db)
        .await
        .context("Failed to record a cancelled message")?;
        cancelled += 1;
    }
    Ok(cancelled)
}
