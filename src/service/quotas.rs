//! Fixed-window counters kept in the database, so every instance shares
//! them: send quotas against SMS pumping and mail floods (per recipient,
//! per host and recipient, per host and overall). Request limits per host
//! use the same windows and table (`service::request_limits`).
use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use chrono::{DateTime, Duration, TimeZone, Utc};
use entity::send_quota;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait,
    sea_query::{Expr, ExprTrait, InsertStatement, OnConflict, Query},
};
use uuid::Uuid;

use entity::states::Channel;

use crate::{
    config::Quota,
    db::together,
    error::{CoreError, CoreResult, QuotaScope, quota_scope_name},
    service::write::{self, WriteTxn},
    state::Core,
};

/// A message about to be queued, as the quotas count it.
#[derive(Debug, Clone, Copy)]
pub struct QueuedSend<'a> {
    pub channel: Channel,
    pub recipient: &'a str,
}

/// The sends one transaction queues for one host at `now` (a register's
/// SMS and email, a resend's one message).
#[derive(Debug, Clone)]
pub struct HostSends<'a> {
    pub host_id: Uuid,
    pub now: DateTime<Utc>,
    pub sends: Vec<QueuedSend<'a>>,
}

/// A send a quota (or the host's monthly SMS budget) refused.
#[derive(Debug, Clone, Copy)]
pub struct Refusal {
    pub channel: Channel,
    pub scope: QuotaScope,
    pub host_id: Uuid,
    pub retry_after_seconds: u64,
}

impl Refusal {
    /// The error a request is answered with, counted in the metrics and
    /// logged. A batch of registers that would be refused as a whole is
    /// not reported: its registers are written one by one instead, and
    /// the one actually refused is.
    pub fn reported(self, core: &Core) -> CoreError {
        let scope_name = quota_scope_name(self.channel, self.scope);
        core.metrics.refused_by_quota(self.channel, scope_name);
        tracing::warn!(channel = self.channel.name(), scope = scope_name, host_id = %self.host_id.simple(), "send refused by quota");
        CoreError::SendQuotaExceeded {
            channel: self.channel,
            scope: self.scope,
            retry_after_seconds: self.retry_after_seconds,
        }
    }
}

/// Counts every send of `queued` against every configured quota of its
/// channel, all in one statement. Runs inside the caller's transaction:
/// on a refusal the caller rolls back, so neither the counts nor the
/// messages remain. Callers count last, just before they commit: the
/// host's and the global counters are rows every register writes, and a
/// row stays locked until its transaction ends, so the later they are
/// written the shorter the registers behind them wait. The inserts `txn`
/// holds go with the count (`WriteTxn::hold`; on PostgreSQL in its round
/// trip), or alone when no quota is on.
///
/// The refusal is the first scope over its limit in this order: the
/// sends in the order given (SMS before email), each's recipient, host and
/// recipient, host, everyone. The rows are written (so locked) sorted by
/// scope and window, the same order in every transaction, so concurrent
/// transactions cannot deadlock on the rows they share.
pub async fn count(
    core: &Core,
    txn: &WriteTxn,
    queued: &[HostSends<'_>],
) -> CoreResult<Option<Refusal>> {
    let mut counters = Vec::new();
    for batch in queued {
        for send in &batch.sends {
            for (channel, scope_kind, scope, quota) in scopes_of(core, *send, batch.host_id) {
                // A switched-off quota (`limit = 0`) is not counted at all.
                if quota.limit == 0 {
                    continue;
                }
                let (window_start, window_end) = window(batch.now, quota);
                let refusal = Refusal {
                    channel,
                    scope: scope_kind,
                    host_id: batch.host_id,
                    retry_after_seconds: seconds_until(window_end, batch.now),
                };
                counters.push((scope, window_start, quota.limit, refusal));
            }
        }
    }
    if counters.is_empty() {
        write::send_held(txn).await?;
        return Ok(None);
    }
    let mut additions: BTreeMap<(&str, DateTime<Utc>), i32> = BTreeMap::new();
    for (scope, window_start, _, _) in &counters {
        *additions
            .entry((scope.as_str(), *window_start))
            .or_default() += 1;
    }
    let additions = additions
        .into_iter()
        .map(|((scope, window_start), n)| (scope, window_start, n))
        .collect::<Vec<_>>();
    let totals = add_each(&**txn, &additions, txn.take_held()).await?;
    let totals = additions
        .iter()
        .zip(totals)
        .map(|((scope, window_start, _), total)| ((*scope, *window_start), total))
        .collect::<HashMap<_, _>>();
    Ok(counters
        .iter()
        .find(|(scope, window_start, limit, _)| {
            totals
                .get(&(scope.as_str(), *window_start))
                .is_some_and(|total| u32::try_from(*total).unwrap_or(u32::MAX) > *limit)
        })
        .map(|(_, _, _, refusal)| *refusal))
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
    // table holds no phone numbers or emails. A recipient's two counters
    // share the key's start, so they sit side by side in its index: the
    // hashes are random, and a new recipient's counters change one page of
    // it, not two. Migration m20261205_000002 moved the stored counters
    // to this format, by position: the hash and the host id are 32
    // characters each.
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
            format!("{channel_name}:recipient:{recipient}:host:{host_id}"),
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

/// Adds `n` to each (scope, window start) counter in one statement and
/// returns their new totals in the order of `windows`, this addition
/// included. Request limits (`service::request_limits`) store their
/// batched counts with it.
pub(crate) async fn add(
    db: &impl ConnectionTrait,
    windows: &[(&str, DateTime<Utc>)],
    n: i32,
) -> CoreResult<Vec<i32>> {
    let additions = windows
        .iter()
        .map(|(scope, window_start)| (*scope, *window_start, n))
        .collect::<Vec<_>>();
    add_each(db, &additions, Vec::new()).await
}

/// Adds each addition's `n` to its (scope, window start) counter in one
/// statement, in the order given, and returns the new totals in that
/// order: read with RETURNING in the same statement, or, on MySQL, which
/// has none for upserts, by a read in the caller's transaction (the rows
/// stay locked until it ends). Each counter appears at most once. The
/// inserts `ahead` go first, with the statement on PostgreSQL
/// (`db::together`).
async fn add_each(
    db: &impl ConnectionTrait,
    additions: &[(&str, DateTime<Utc>, i32)],
    mut ahead: Vec<InsertStatement>,
) -> CoreResult<Vec<i32>> {
    let backend = db.get_database_backend();
    let mut upsert = Query::insert();
    upsert.into_table(send_quota::Entity).columns([
        send_quota::Column::Scope,
        send_quota::Column::WindowStart,
        send_quota::Column::Used,
    ]);
    for (scope, window_start, n) in additions {
        upsert
            .values([(*scope).into(), (*window_start).into(), (*n).into()])
            .context("Failed to build a quota count")?;
    }
    // Each row adds its own `n`: the value it would have inserted.
    let inserted = if backend == DbBackend::MySql {
        "VALUES(`used`)"
    } else {
        "excluded.used"
    };
    upsert.on_conflict(
        OnConflict::columns([send_quota::Column::Scope, send_quota::Column::WindowStart])
            .value(
                send_quota::Column::Used,
                Expr::col((send_quota::Entity, send_quota::Column::Used)).add(Expr::cust(inserted)),
            )
            .to_owned(),
    );
    let columns = [
        send_quota::Column::Scope,
        send_quota::Column::WindowStart,
        send_quota::Column::Used,
    ];
    let refused = |error| write::new_rows_refused(error, "Failed to count against a quota");
    let rows = if backend == DbBackend::MySql {
        ahead.push(upsert);
        together::execute_all(db, ahead).await.map_err(refused)?;
        let mut keys = Condition::any();
        for (scope, window_start, _) in additions {
            keys = keys.add(
                Condition::all()
                    .add(send_quota::Column::Scope.eq(*scope))
                    .add(send_quota::Column::WindowStart.eq(*window_start)),
            );
        }
        let read = Query::select()
            .columns(columns)
            .from(send_quota::Entity)
            .cond_where(keys)
            .take();
        db.query_all(&read)
            .await
            .context("Failed to read a quota")?
    } else {
        upsert.returning(Query::returning().columns(columns));
        together::query_after(db, ahead, upsert)
            .await
            .map_err(refused)?
    };
    let mut stored = HashMap::with_capacity(rows.len());
    for row in rows {
        let scope: String = row
            .try_get("", "scope")
            .context("Failed to read a quota's scope")?;
        let window_start: DateTime<Utc> = row
            .try_get("", "window_start")
            .context("Failed to read a quota's window")?;
        let count: i32 = row
            .try_get("", "used")
            .context("Failed to read a quota count")?;
        stored.insert((scope, window_start), count);
    }
    // The rows were just written in this transaction: one missing means the
    // transaction is no longer there (a Galera node rolled it back for
    // another node's write set and the read ran outside it), so it is run
    // again whole, like any lost race.
    additions
        .iter()
        .map(|(scope, window_start, _)| {
            stored
                .get(&((*scope).to_owned(), *window_start))
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
