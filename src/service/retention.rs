//! What is kept and for how long. A periodic job, run by one instance at a
//! time under a lease in the database, deletes registrations that were
//! never confirmed (with their codes, links and messages), codes and links
//! that can no longer be used, expired access tokens, idempotency records
//! and old delivery attempts, and erases the text of dead messages.
use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use entity::{
    access_token, completion_link, delivery_attempt, job_lease, outbox_message, registration,
    sms_token,
    states::{OutboxStatus, RegistrationStatus},
};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, ExprTrait, OnConflict, Query},
};
use uuid::Uuid;

use super::{idempotency, outbox, quotas};
use crate::{
    error::CoreResult,
    service::{retrying, write},
    state::Core,
};

const JOB: &str = "retention";

/// What one run removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub registrations: u64,
    pub codes: u64,
    pub links: u64,
    pub access_tokens: u64,
    pub delivery_attempts: u64,
    pub message_bodies: u64,
    /// Queued messages whose code or link expired before they were sent.
    pub expired_messages: u64,
    pub idempotency_records: u64,
    pub quota_windows: u64,
}

/// Runs the job if no other instance holds it; `None` when one does.
pub async fn run_if_due(core: &Core, holder: Uuid) -> CoreResult<Option<Purged>> {
    let now = core.clock.now();
    let minutes = std::cmp::max(core.settings.retention.interval_minutes, 1);
    let interval = Duration::minutes(i64::from(minutes));
    if !take_lease(core, holder, now, interval).await? {
        return Ok(None);
    }
    purge(core).await.map(Some)
}

/// One instance per interval: the lease is taken when free or expired, and
/// kept until the next run is due, so the others skip.
async fn take_lease(
    core: &Core,
    holder: Uuid,
    now: DateTime<Utc>,
    interval: Duration,
) -> CoreResult<bool> {
    let turn = write::turn(core).await;
    let db = turn.db();
    job_lease::Entity::insert(job_lease::ActiveModel {
        name: Set(JOB.to_owned()),
        holder: Set(Uuid::nil()),
        lease_until: Set(now - Duration::seconds(1)),
    })
    .on_conflict(
        OnConflict::column(job_lease::Column::Name)
            .update_column(job_lease::Column::Name)
            .to_owned(),
    )
    .exec_without_returning(db)
    .await
    .context("Failed to create the retention lease")?;
    let taken = job_lease::Entity::update_many()
        .col_expr(job_lease::Column::Holder, Expr::value(holder))
        .col_expr(job_lease::Column::LeaseUntil, Expr::value(now + interval))
        .filter(job_lease::Column::Name.eq(JOB))
        .filter(job_lease::Column::LeaseUntil.lte(now))
        .exec(db)
        .await
        .context("Failed to take the retention lease")?;
    Ok(taken.rows_affected == 1)
}

/// Applies every retention rule now, whoever holds the lease (the CLI's
/// `registrations purge`).
pub async fn purge(core: &Core) -> CoreResult<Purged> {
    let now = core.clock.now();
    let retention = &core.settings.retention;
    let days = |n: u32| Duration::days(i64::from(n));
    let mut purged = Purged {
        registrations: purge_unconfirmed(core, now - days(retention.unconfirmed_registration_days))
            .await?,
        ..Purged::default()
    };
    // The rest are single statements, run in this process's writer turn
    // like every write (`service::write`): on SQLite a write outside it can
    // slip in while a transaction holding the turn is between its read and
    // its first write, which then fails with SQLITE_BUSY. Held across them
    // all, which the retention windows keep short.
    let turn = write::turn(core).await;
    let db = turn.db();
    // Codes of registrations no longer pending, once expired, can never be
    // used again; the pending one's latest code stays, it names the SMS.
    let closed = Query::select()
        .column(registration::Column::Id)
        .from(registration::Entity)
        .and_where(registration::Column::Status.ne(RegistrationStatus::Pending))
        .to_owned();
    purged.codes = sms_token::Entity::delete_many()
        .filter(sms_token::Column::ExpiresAt.lt(now))
        .filter(
            sms_token::Column::SupersededAt
                .is_not_null()
                .or(sms_token::Column::RegistrationId.in_subquery(closed)),
        )
        .exec(db)
        .await
        .context("Failed to purge SMS codes")?
        .rows_affected;
    purged.links = completion_link::Entity::delete_many()
        .filter(completion_link::Column::ExpiresAt.lt(now - Duration::days(1)))
        .exec(db)
        .await
        .context("Failed to purge completion links")?
        .rows_affected;
    purged.access_tokens = access_token::Entity::delete_many()
        .filter(access_token::Column::ExpiresAt.lt(now - Duration::days(1)))
        .exec(db)
        .await
        .context("Failed to purge access tokens")?
        .rows_affected;
    purged.delivery_attempts = delivery_attempt::Entity::delete_many()
        .filter(
            delivery_attempt::Column::AttemptedAt.lt(now - days(retention.delivery_attempt_days)),
        )
        .exec(db)
        .await
        .context("Failed to purge delivery attempts")?
        .rows_affected;
    purged.message_bodies = outbox_message::Entity::update_many()
        .col_expr(
            outbox_message::Column::Body,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            outbox_message::Column::HtmlBody,
            Expr::value(Option::<String>::None),
        )
        .filter(outbox_message::Column::Status.eq(OutboxStatus::Dead))
        .filter(outbox_message::Column::Body.is_not_null())
        .filter(outbox_message::Column::CreatedAt.lt(now - days(retention.dead_message_body_days)))
        .exec(db)
        .await
        .context("Failed to erase dead message bodies")?
        .rows_affected;
    purged.expired_messages =
        outbox::cancel_expired(db, core.rules.token_expiry, core.rules.link_expiry, now).await?;
    purged.idempotency_records = idempotency::purge_expired(core).await?;
    purged.quota_windows = quotas::purge_old_windows(core, now).await?;
    tracing::info!(?purged, "retention applied");
    Ok(purged)
}

/// Deletes registrations never confirmed that began before `cutoff`, with
/// everything that hangs off them, in one transaction.
async fn purge_unconfirmed(core: &Core, cutoff: DateTime<Utc>) -> CoreResult<u64> {
    let ids: Vec<Uuid> = registration::Entity::find()
        .select_only()
        .column(registration::Column::Id)
        .filter(registration::Column::Status.ne(RegistrationStatus::Completed))
        .filter(registration::Column::CreatedAt.lt(cutoff))
        .into_tuple()
        .all(&core.db)
        .await
        .context("Failed to find unconfirmed registrations")?;
    if ids.is_empty() {
        return Ok(0);
    }
    // It reads before it writes: on SQLite a write that got in between
    // (one outside this process's writer turn: another process) fails it
    // with BUSY, a lost race like any other, run whole again.
    retrying(core, || async {
        let txn = write::begin(core).await?;
        let messages: Vec<Uuid> = outbox_message::Entity::find()
            .select_only()
            .column(outbox_message::Column::Id)
            .filter(outbox_message::Column::RegistrationId.is_in(ids.to_vec()))
            .into_tuple()
            .all(&*txn)
            .await
            .context("Failed to find their messages")?;
        delete_where(
            &*txn,
            delivery_attempt::Entity,
            delivery_attempt::Column::MessageId,
            &messages,
        )
        .await?;
        super::webhooks::forget_deliveries(&*txn, &messages).await?;
        delete_where(
            &*txn,
            outbox_message::Entity,
            outbox_message::Column::RegistrationId,
            &ids,
        )
        .await?;
        delete_where(
            &*txn,
            sms_token::Entity,
            sms_token::Column::RegistrationId,
            &ids,
        )
        .await?;
        delete_where(
            &*txn,
            completion_link::Entity,
            completion_link::Column::RegistrationId,
            &ids,
        )
        .await?;
        let deleted = registration::Entity::delete_many()
            .filter(registration::Column::Id.is_in(ids.iter().copied()))
            .filter(registration::Column::Status.ne(RegistrationStatus::Completed))
            .exec(&*txn)
            .await
            .context("Failed to delete unconfirmed registrations")?;
        write::commit(txn).await?;
        Ok(deleted.rows_affected)
    })
    .await
}

async fn delete_where<E: EntityTrait>(
    db: &impl ConnectionTrait,
    entity: E,
    column: E::Column,
    ids: &[Uuid],
) -> CoreResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    E::delete_many()
        .filter(column.is_in(ids.iter().copied()))
        .exec(db)
        .await
        .with_context(|| format!("Failed to purge {}", entity.table_name()))?;
    Ok(())
}
