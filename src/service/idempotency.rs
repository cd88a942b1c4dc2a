//! Remembered responses for `Idempotency-Key`: the HTTP layer decides what
//! to remember and replays it; this module owns the table.
use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use entity::idempotency_record;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait},
};

use super::{hosts::AuthenticatedHost, is_unique_violation, retrying};
use crate::{error::CoreResult, state::Core};

/// How long a key is remembered.
pub const RETENTION: Duration = Duration::hours(24);

/// What a key means when a request arrives with it.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// First use: the request runs and its response is stored.
    New,
    /// Used before for this very request: send the stored response.
    Replay { status: u16, body: String },
    /// Used before for another request.
    Reused,
    /// Used before and still running: its holder's lease has not run out.
    InProgress,
}

/// How long a request may hold its key unanswered. Longer than any request
/// takes; after it, a client that lost the first answer (timeout, crash,
/// disconnect) retries and the retry runs.
pub const IN_PROGRESS_LEASE: Duration = Duration::seconds(60);

/// Records the key as in progress unless it is already known. Like every
/// write here, run whole again when the database gives it up for a lost
/// race (a Galera certification failure, a deadlock).
pub async fn claim(
    core: &Core,
    host: &AuthenticatedHost,
    key: &str,
    fingerprint: &str,
) -> CoreResult<Claim> {
    retrying(core, || claim_once(core, host, key, fingerprint)).await
}

async fn claim_once(
    core: &Core,
    host: &AuthenticatedHost,
    key: &str,
    fingerprint: &str,
) -> CoreResult<Claim> {
    let now = core.clock.now();
    // Two rounds at most: the second follows the removal of an expired key.
    for _ in 0..2 {
        let inserted = idempotency_record::Entity::insert(idempotency_record::ActiveModel {
            host_id: Set(host.id),
            idempotency_key: Set(key.to_owned()),
            request_fingerprint: Set(fingerprint.to_owned()),
            response_status: Set(None),
            response_body: Set(None),
            created_at: Set(now),
            locked_until: Set(Some(now + IN_PROGRESS_LEASE)),
        })
        .exec(&core.db)
        .await;
        match inserted {
            Ok(_) => return Ok(Claim::New),
            Err(e) if is_unique_violation(&e) => {}
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context("Failed to store idempotency key")
                    .into());
            }
        }
        let Some(existing) = idempotency_record::Entity::find_by_id((host.id, key.to_owned()))
            .one(&core.db)
            .await
            .context("Failed to load idempotency record")?
        else {
            continue;
        };
        if existing.created_at + RETENTION < now {
            forget_once(core, host, key).await?;
            continue;
        }
        if existing.request_fingerprint != fingerprint {
            return Ok(Claim::Reused);
        }
        return match (existing.response_status, existing.response_body) {
            (Some(status), Some(body)) => {
                let status = u16::try_from(status)
                    .with_context(|| format!("stored idempotent response has status {status}"))?;
                Ok(Claim::Replay { status, body })
            }
            _ if take_over(core, host, key, now).await? => Ok(Claim::New),
            _ => Ok(Claim::InProgress),
        };
    }
    Ok(Claim::InProgress)
}

/// Takes an unanswered key whose holder's lease ran out; of several
/// retries at once, one wins.
async fn take_over(
    core: &Core,
    host: &AuthenticatedHost,
    key: &str,
    now: DateTime<Utc>,
) -> CoreResult<bool> {
    let taken = idempotency_record::Entity::update_many()
        .col_expr(
            idempotency_record::Column::LockedUntil,
            Expr::value(now + IN_PROGRESS_LEASE),
        )
        .filter(idempotency_record::Column::HostId.eq(host.id))
        .filter(idempotency_record::Column::IdempotencyKey.eq(key))
        .filter(idempotency_record::Column::ResponseStatus.is_null())
        .filter(
            idempotency_record::Column::LockedUntil
                .is_null()
                .or(idempotency_record::Column::LockedUntil.lt(now)),
        )
        .exec(&core.db)
        .await
        .context("Failed to take over idempotency key")?;
    Ok(taken.rows_affected == 1)
}

pub async fn store_response(
    core: &Core,
    host: &AuthenticatedHost,
    key: &str,
    status: u16,
    body: String,
) -> CoreResult<()> {
    retrying(core, || {
        store_response_once(core, host, key, status, body.clone())
    })
    .await
}

async fn store_response_once(
    core: &Core,
    host: &AuthenticatedHost,
    key: &str,
    status: u16,
    body: String,
) -> CoreResult<()> {
    idempotency_record::Entity::update_many()
        .col_expr(
            idempotency_record::Column::ResponseStatus,
            Expr::value(i32::from(status)),
        )
        .col_expr(idempotency_record::Column::ResponseBody, Expr::value(body))
        .col_expr(
            idempotency_record::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(idempotency_record::Column::HostId.eq(host.id))
        .filter(idempotency_record::Column::IdempotencyKey.eq(key))
        .exec(&core.db)
        .await
        .context("Failed to store idempotent response")?;
    Ok(())
}

/// Lets the key be used again, when nothing was done for certain.
pub async fn forget(core: &Core, host: &AuthenticatedHost, key: &str) -> CoreResult<()> {
    retrying(core, || forget_once(core, host, key)).await
}

async fn forget_once(core: &Core, host: &AuthenticatedHost, key: &str) -> CoreResult<()> {
    idempotency_record::Entity::delete_by_id((host.id, key.to_owned()))
        .exec(&core.db)
        .await
        .context("Failed to delete idempotency record")?;
    Ok(())
}

pub async fn purge_expired(core: &Core) -> CoreResult<u64> {
    let deleted = idempotency_record::Entity::delete_many()
        .filter(idempotency_record::Column::CreatedAt.lt(core.clock.now() - RETENTION))
        .exec(&core.db)
        .await
        .context("Failed to purge idempotency records")?;
    Ok(deleted.rows_affected)
}
