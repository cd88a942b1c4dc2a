//! Request limits per host (`[quotas] register_per_host`, `verify_per_host`)
//! against enumeration and register floods.
//!
//! Counting each request with a write of its own made every availability
//! check a database write, and on SQLite, with its one writer at a time,
//! that write was what limited verifyUsername (about 1,500/s with the
//! limit, 7,000/s without, measured with `bench/run`). So each instance
//! counts in memory and adds its counts to the shared counter in the
//! database (`send_quota`, the same fixed windows) every
//! [`SYNC_INTERVAL`], reading back the total of every instance:
//!
//! - one instance is exact: it admits exactly `limit` requests a window;
//! - an instance that meets a window for the first time reads the total
//!   the others have stored before admitting anything;
//! - across instances a host can get past the limit by at most what the
//!   instances admit within one interval, before their sync shows the
//!   total (an instance with nothing to add does not sync, so an idle one
//!   costs nothing);
//! - counts not yet stored when an instance dies (one interval) are lost.
use std::time::Duration as StdDuration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use entity::send_quota;
use sea_orm::{ConnectionTrait, DbBackend, EntityTrait};
use tokio::sync::watch;

use crate::{
    error::{CoreError, CoreResult, LimitedOperation},
    service::{
        hosts::AuthenticatedHost,
        quotas::{self, window},
        retrying, write,
    },
    state::Core,
};

/// How often each instance adds its counts to the shared ones.
pub const SYNC_INTERVAL: StdDuration = StdDuration::from_millis(100);

/// Counts one request of `operation` by the host, refusing it once the
/// host's limit for the window is used. A request counts whether or not it
/// then succeeds. `limit = 0` switches the limit off.
pub async fn admit(
    core: &Core,
    host: &AuthenticatedHost,
    operation: LimitedOperation,
) -> CoreResult<()> {
    let q = &core.settings.quotas;
    let quota = match operation {
        LimitedOperation::Register => q.register_per_host,
        LimitedOperation::Verify => q.verify_per_host,
    };
    if quota.limit == 0 {
        return Ok(());
    }
    let scope = format!("{}:host:{}", operation.name(), host.id);
    let now = core.clock.now();
    let (start, end) = window(now, quota);
    let limiter = &core.request_limits;
    if !limiter.knows(&scope, start) {
        let stored = stored_count(&core.db, &scope, start).await?;
        limiter.start_window(&scope, start, end, stored);
    }
    if limiter.take(&scope, start, quota.limit) {
        return Ok(());
    }
    tracing::warn!(host = %host.name, operation = operation.name(), "request refused by rate limit");
    Err(CoreError::RateLimited {
        operation,
        retry_after_seconds: quotas::seconds_until(end, now),
    })
}

/// Adds this instance's counts to the database every [`SYNC_INTERVAL`]
/// until `stopping`, then once more. Runs beside the HTTP server.
pub async fn sync_until_stopped(core: Core, mut stopping: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(SYNC_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopping.wait_for(|stopping| *stopping) => break,
        }
        if let Err(error) = sync(&core).await {
            // Kept pending: the next tick tries again.
            tracing::warn!(error = %error, "request limit counts not stored yet");
        }
    }
    if let Err(error) = sync(&core).await {
        tracing::warn!(error = %error, "request limit counts lost at shutdown");
    }
}

/// Stores every pending count and learns the totals of all instances.
pub async fn sync(core: &Core) -> CoreResult<()> {
    let limiter = &core.request_limits;
    let _one_at_a_time = limiter.syncing.lock().await;
    limiter.forget_ended(core.clock.now());
    for (scope, start, pending) in limiter.pending() {
        let stored = retrying(core, || add(core, &scope, start, pending)).await?;
        limiter.stored(&scope, start, pending, stored);
    }
    Ok(())
}

/// What every instance stored for the window so far.
async fn stored_count(
    db: &impl ConnectionTrait,
    scope: &str,
    start: DateTime<Utc>,
) -> CoreResult<u32> {
    let row = send_quota::Entity::find_by_id((scope.to_owned(), start))
        .one(db)
        .await
        .context("Failed to read a request count")?;
    Ok(row.map_or(0, |r| u32::try_from(r.used).unwrap_or(0)))
}

/// Adds `n` to the window's stored count and returns the new total (on
/// MySQL in a transaction of its own, which the read needs).
async fn add(core: &Core, scope: &str, start: DateTime<Utc>, n: u32) -> CoreResult<u32> {
    let n = i32::try_from(n).unwrap_or(i32::MAX);
    // A write like any other: on SQLite it takes this process's writer turn
    // (`service::write`), or it could slip in between a transaction's read
    // and its first write and fail that transaction with BUSY.
    let turn = write::turn(core).await;
    let db = turn.db();
    let used = if db.get_database_backend() == DbBackend::MySql {
        let txn = crate::db::begin(db, core.galera).await?;
        let used = quotas::add(&txn, &[(scope, start)], n).await?;
        crate::db::commit(txn, core.galera)
            .await
            .context("Failed to commit request counts")?;
        used
    } else {
        quotas::add(db, &[(scope, start)], n).await?
    };
    // One window in, one total out.
    Ok(u32::try_from(used[0]).unwrap_or(0))
}
