//! Fixed-window counters kept in the database, so every instance shares
//! them: send quotas against SMS pumping and mail floods (per recipient,
//! per host and recipient, per host and overall). Request limits per host
//! use the same windows and table (`service::request_limits`).
use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use chrono::{DateTime, Duration, TimeZone, Utc};
use entity::send_quota;
use sea_orm::{ColumnTrait, EntityTrait};
use uuid::Uuid;

use entity::states::Channel;

mod allowances;
mod rows;

pub(crate) use rows::add;
use rows::{Addition, add_each};

use crate::{
    config::Quota,
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
/// messages remain. Callers count last, just before they commit: a
/// counter's row stays locked until its transaction ends, so the later it
/// is written the shorter others wait for it. The inserts `txn` holds go
/// with the count (`WriteTxn::hold`; on PostgreSQL in its round trip), or
/// alone when no quota is on.
///
/// A recipient's counters are rows of their own. The host's and the
/// global ones, which every transaction of a host or of everyone counts
/// in, are counted in this transaction's row of each (`allowances`): a
/// row whose count goes past what it was granted is granted more, or the
/// send is refused, after the statement.
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
                // Every transaction of a host, or of everyone, counts in
                // these: each counts in its own row of them.
                let row = match scope_kind {
                    QuotaScope::Host | QuotaScope::Global => Some(allowances::counting_row(
                        &scope,
                        txn.counting_slot(),
                        quota.limit,
                    )),
                    QuotaScope::Recipient
                    | QuotaScope::HostRecipient
                    | QuotaScope::MonthlyBudget => None,
                };
                counters.push(Counter {
                    scope,
                    row,
                    window_start,
                    limit: quota.limit,
                    refusal,
                });
            }
        }
    }
    if counters.is_empty() {
        write::send_held(txn).await?;
        return Ok(None);
    }
    let mut additions: BTreeMap<(&str, DateTime<Utc>), i32> = BTreeMap::new();
    for counter in &counters {
        *additions
            .entry((counter.counted_in(), counter.window_start))
            .or_default() += 1;
    }
    let additions = additions
        .into_iter()
        .map(|((row, window_start), n)| Addition {
            row,
            window_start,
            used: n,
            granted: 0,
        })
        .collect::<Vec<_>>();
    let totals = add_each(&**txn, &additions, txn.take_held()).await?;
    let totals = additions
        .iter()
        .zip(totals)
        .map(|(addition, total)| ((addition.row, addition.window_start), total))
        .collect::<HashMap<_, _>>();
    let stored = |counter: &Counter| totals[&(counter.counted_in(), counter.window_start)];
    // Shared rows past their allowance, once each, in key order: the
    // order their scopes' rows are locked in.
    let mut short = BTreeMap::new();
    for counter in &counters {
        let (used, granted) = stored(counter);
        if counter.row.is_some() && used > granted {
            short.insert(
                (counter.scope.as_str(), counter.window_start),
                allowances::Short {
                    row: counter.counted_in(),
                    limit: counter.limit,
                    need: used - granted,
                },
            );
        }
    }
    let topped_up = allowances::top_up(txn, &short).await?;
    Ok(counters
        .iter()
        .find(|counter| match counter.row {
            Some(_) => !topped_up
                .get(&(counter.scope.as_str(), counter.window_start))
                .copied()
                .unwrap_or(true),
            None => u32::try_from(stored(counter).0).unwrap_or(u32::MAX) > counter.limit,
        })
        .map(|counter| counter.refusal))
}

/// One scope a send is counted in.
struct Counter {
    scope: String,
    /// For a shared scope, the row this transaction counts in.
    row: Option<String>,
    window_start: DateTime<Utc>,
    limit: u32,
    refusal: Refusal,
}

impl Counter {
    fn counted_in(&self) -> &str {
        self.row.as_deref().unwrap_or(&self.scope)
    }
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
