//! Fixed-window counters kept in the database, so every instance shares
//! them: send quotas against SMS pumping and mail floods (per recipient,
//! per host and recipient, per host and overall). Request limits per host
//! use the same windows and table (`service::request_limits`).
use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, Duration, TimeZone, Utc};
use entity::send_quota;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    sea_query::{Expr, ExprTrait, OnConflict, Query},
};
use uuid::Uuid;

use entity::states::Channel;

use crate::{
    config::Quota,
    error::{CoreError, CoreResult, QuotaScope, quota_scope_name},
    state::Core,
};

/// A message about to be queued, as the quotas count it.
#[derive(Debug, Clone, Copy)]
pub struct QueuedSend<'a> {
    pub channel: Channel,
    pub recipient: &'a str,
}

/// Counts each of `sends` for `host` against every configured quota of its
/// channel, all in one statement. Runs inside the caller's transaction:
/// when a quota is exceeded the caller rolls back, so neither the counts
/// nor the messages remain. Callers count last, just before they commit:
/// the host's and the global counters are rows every register writes, and
/// a row stays locked until its transaction ends, so the later they are
/// written the shorter the registers behind them wait.
pub async fn consume(
    core: &Core,
    txn: &DatabaseTransaction,
    sends: &[QueuedSend<'_>],
    host_id: Uuid,
    now: DateTime<Utc>,
) -> CoreResult<()> {
    // Always in this order: the first scope over its limit is the one
    // reported, and every transaction locks the rows it shares with another
    // in the same order (recipient, host-recipient, host, global; in the
    // order of `sends`, SMS before email), so concurrent transactions
    // cannot deadlock on them.
    let scopes: Vec<(Channel, QuotaScope, String, Quota)> = sends
        .iter()
        .flat_map(|send| scopes_of(core, *send, host_id))
        .collect();
    let counters = scopes
        .iter()
        .map(|(_, _, scope, quota)| (scope.as_str(), *quota))
        .collect::<Vec<_>>();
    if let Some((refused, retry_after_seconds)) = count(txn, &counters, now).await? {
        let (channel, scope_kind, _, _) = scopes[refused];
        let scope_name = quota_scope_name(channel, scope_kind);
        core.metrics.refused_by_quota(channel, scope_name);
        tracing::warn!(channel = channel.name(), scope = scope_name, host_id = %host_id.simple(), "send refused by quota");
        return Err(CoreError::SendQuotaExceeded {
            channel,
            scope: scope_kind,
            retry_after_seconds,
        });
    }
    Ok(())
}

/// The counters one send is counted in, with their quotas.
fn scopes_of(
    core: &Core,
    send: QueuedSend<'_>,
    host_id: Uuid,
) -> Vec<(Channel, QuotaScope, String, Quota)> {
    let q = &core.settings.quotas;
    let channel = send.channel;
    let (per_recipient, per_host_recipient, per_host, global) = match channel {
        Channel::Sms => (
            q.sms_per_phone,
            q.sms_per_host_phone,
            q.sms_per_host,
            q.sms_global,
        ),
        Channel::Email => (
            q.email_per_address,
            q.email_per_host_address,
            q.email_per_host,
            q.email_global,
        ),
        // A webhook goes to the host, which pays for nothing: no quota.
        Channel::Webhook => return Vec::new(),
    };
    // Recipients are hashed, keyed (128 bits kept): scopes stay well within
    // the 120-character column whatever the address's length, and the
    // table holds no phone numbers or emails.
    let mut recipient = core.keys.token_hash(send.recipient);
    recipient.truncate(32);
    let host_id = host_id.simple();
    let channel_name = channel.name();
    vec![
        (
            channel,
            QuotaScope::Recipient,
            format!("{channel_name}:recipient:{recipient}"),
            per_recipient,
        ),
        (
            channel,
            QuotaScope::HostRecipient,
            format!("{channel_name}:host-recipient:{host_id}:{recipient}"),
            per_host_recipient,
        ),
        (
            channel,
            QuotaScope::Host,
            format!("{channel_name}:host:{host_id}"),
            per_host,
        ),
        (
            channel,
            QuotaScope::Global,
            format!("{channel_name}:global"),
            global,
        ),
    ]
}

/// Adds one to each scope's counter for its current window, in one
/// statement whatever the number of scopes (one upsert plus one read on
/// MySQL); when a count goes past its limit, the position of the first such
/// scope and the seconds until its window ends. A switched-off quota
/// (`limit = 0`) is not counted at all. The rows are written in the order
/// given, which is the order they are locked in.
async fn count(
    db: &impl ConnectionTrait,
    counters: &[(&str, Quota)],
    now: DateTime<Utc>,
) -> CoreResult<Option<(usize, u64)>> {
    let counted = counters
        .iter()
        .enumerate()
        .filter(|(_, (_, quota))| quota.limit > 0)
        .map(|(position, (scope, quota))| {
            let (window_start, window_end) = window(now, *quota);
            (position, *scope, *quota, window_start, window_end)
        })
        .collect::<Vec<_>>();
    if counted.is_empty() {
        return Ok(None);
    }
    let windows = counted
        .iter()
        .map(|(_, scope, _, window_start, _)| (*scope, *window_start))
        .collect::<Vec<_>>();
    let used = add(db, &windows, 1).await?;
    for ((position, _, quota, _, window_end), count) in counted.into_iter().zip(used) {
        if u32::try_from(count).unwrap_or(u32::MAX) > quota.limit {
            return Ok(Some((position, seconds_until(window_end, now))));
        }
    }
    Ok(None)
}

/// Adds `n` to each (scope, window start) counter in one statement and
/// returns their new totals in the order of `windows`, this addition
/// included: read with
/// RETURNING in the same statement, or, on MySQL, which has none for
/// upserts, by a read in the caller's transaction (the rows stay locked
/// until it ends). Request limits (`service::request_limits`) store their
/// batched counts with it too.
pub(crate) async fn add(
    db: &impl ConnectionTrait,
    windows: &[(&str, DateTime<Utc>)],
    n: i32,
) -> CoreResult<Vec<i32>> {
    let mut upsert = Query::insert();
    upsert.into_table(send_quota::Entity).columns([
        send_quota::Column::Scope,
        send_quota::Column::WindowStart,
        send_quota::Column::Used,
    ]);
    for (scope, window_start) in windows {
        upsert
            .values([(*scope).into(), (*window_start).into(), n.into()])
            .context("Failed to build a quota count")?;
    }
    upsert.on_conflict(
        OnConflict::columns([send_quota::Column::Scope, send_quota::Column::WindowStart])
            .value(
                send_quota::Column::Used,
                Expr::col((send_quota::Entity, send_quota::Column::Used)).add(n),
            )
            .to_owned(),
    );
    let rows = if db.get_database_backend() == DbBackend::MySql {
        db.execute(&upsert)
            .await
            .context("Failed to count against a quota")?;
        let mut keys = Condition::any();
        for (scope, window_start) in windows {
            keys = keys.add(
                Condition::all()
                    .add(send_quota::Column::Scope.eq(*scope))
                    .add(send_quota::Column::WindowStart.eq(*window_start)),
            );
        }
        let read = Query::select()
            .columns([send_quota::Column::Scope, send_quota::Column::Used])
            .from(send_quota::Entity)
            .cond_where(keys)
            .to_owned();
        db.query_all(&read)
            .await
            .context("Failed to read a quota")?
    } else {
        upsert.returning(
            Query::returning().columns([send_quota::Column::Scope, send_quota::Column::Used]),
        );
        db.query_all(&upsert)
            .await
            .context("Failed to count against a quota")?
    };
    let mut stored = HashMap::with_capacity(rows.len());
    for row in rows {
        let scope: String = row
            .try_get("", "scope")
            .context("Failed to read a quota's scope")?;
        let count: i32 = row
            .try_get("", "used")
            .context("Failed to read a quota count")?;
        stored.insert(scope, count);
    }
    // The rows were just written in this transaction: one missing means the
    // transaction is no longer there (a Galera node rolled it back for
    // another node's write set and the read ran outside it), so it is run
    // again whole, like any lost race.
    windows
        .iter()
        .map(|(scope, _)| {
            stored
                .get(*scope)
                .copied()
                .ok_or_else(|| anyhow::Error::new(crate::db::TransactionEndedByCluster).into())
        })
        .collect()
}

/// Whole seconds from `now` until `end`, at least 1: a refusal's
/// `Retry-After`.
pub(crate) fn seconds_until(end: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    u64::try_from(std::cmp::max((end - now).num_seconds(), 1)).unwrap_or(1)
}

/// The fixed window holding `now`, aligned to the Unix epoch.
pub(crate) fn window(now: DateTime<Utc>, quota: Quota) -> (DateTime<Utc>, DateTime<Utc>) {
    let length = i64::from(std::cmp::max(quota.window_minutes, 1)) * 60;
    let start = now.timestamp().div_euclid(length) * length;
    let start = Utc.timestamp_opt(start, 0).single().unwrap_or(now);
    (start, start + Duration::seconds(length))
}

/// Clean up windows that ended long ago; the dispatcher calls this now and then.
pub async fn purge_old_windows(core: &Core, now: DateTime<Utc>) -> CoreResult<u64> {
    use sea_orm::QueryFilter;
    let result = send_quota::Entity::delete_many()
        .filter(send_quota::Column::WindowStart.lt(now - Duration::days(2)))
        .exec(&core.db)
        .await
        .context("Failed to purge old send quota windows")?;
    Ok(result.rows_affected)
}
