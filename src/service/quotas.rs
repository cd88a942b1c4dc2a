//! Send quotas against SMS pumping: fixed-window counters per recipient,
//! per host and overall, kept in the database so every instance shares them.
use anyhow::Context;
use chrono::{DateTime, Duration, TimeZone, Utc};
use entity::send_quota;
use sea_orm::{
    ActiveValue::Set,
    DatabaseTransaction, EntityTrait,
    sea_query::{Expr, ExprTrait, OnConflict},
};
use uuid::Uuid;

use entity::states::Channel;

use crate::{
    config::Quota,
    error::{CoreError, CoreResult, QuotaScope, quota_scope_name},
    state::Core,
};

/// Counts one send on `channel` to `recipient` for `host` against every
/// configured quota. Runs inside the caller's transaction: when a quota is
/// exceeded the caller rolls back, so neither the count nor the message
/// remains.
pub async fn consume(
    core: &Core,
    txn: &DatabaseTransaction,
    channel: Channel,
    recipient: &str,
    host_id: Uuid,
    now: DateTime<Utc>,
) -> CoreResult<()> {
    let q = &core.settings.quotas;
    let (per_recipient, per_host, global) = match channel {
        Channel::Sms => (q.sms_per_phone, q.sms_per_host, q.sms_global),
        Channel::Email => (q.email_per_address, q.email_per_host, q.email_global),
    };
    let recipient_scope = quota_scope_name(channel, QuotaScope::Recipient);
    // Always in this order, so concurrent transactions lock rows alike.
    let scopes = [
        (
            per_recipient,
            QuotaScope::Recipient,
            format!("{}:{recipient_scope}:{recipient}", channel.name()),
        ),
        (
            per_host,
            QuotaScope::Host,
            format!("{}:host:{host_id}", channel.name()),
        ),
        (
            global,
            QuotaScope::Global,
            format!("{}:global", channel.name()),
        ),
    ];
    for (quota, scope_kind, scope) in scopes {
        if quota.limit == 0 {
            continue;
        }
        let (window_start, window_end) = window(now, quota);
        send_quota::Entity::insert(send_quota::ActiveModel {
            scope: Set(scope.clone()),
            window_start: Set(window_start),
            used: Set(1),
        })
        .on_conflict(
            OnConflict::columns([send_quota::Column::Scope, send_quota::Column::WindowStart])
                .value(
                    send_quota::Column::Used,
                    Expr::col((send_quota::Entity, send_quota::Column::Used)).add(1),
                )
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await
        .context("Failed to count a send")?;
        let used = send_quota::Entity::find_by_id((scope, window_start))
            .one(txn)
            .await
            .context("Failed to read a send quota")?
            .map_or(0, |row| row.used);
        if u32::try_from(used).unwrap_or(u32::MAX) > quota.limit {
            core.metrics
                .refused_by_quota(channel, quota_scope_name(channel, scope_kind));
            tracing::warn!(channel = channel.name(), scope = quota_scope_name(channel, scope_kind), %host_id, "send refused by quota");
            let retry_after = std::cmp::max((window_end - now).num_seconds(), 1);
            return Err(CoreError::SendQuotaExceeded {
                channel,
                scope: scope_kind,
                retry_after_seconds: u64::try_from(retry_after).unwrap_or(1),
            });
        }
    }
    Ok(())
}

/// The fixed window holding `now`, aligned to the Unix epoch.
fn window(now: DateTime<Utc>, quota: Quota) -> (DateTime<Utc>, DateTime<Utc>) {
    let length = i64::from(std::cmp::max(quota.window_minutes, 1)) * 60;
    let start = now.timestamp().div_euclid(length) * length;
    let start = Utc.timestamp_opt(start, 0).single().unwrap_or(now);
    (start, start + Duration::seconds(length))
}

/// Clean up windows that ended long ago; the dispatcher calls this now and then.
pub async fn purge_old_windows(core: &Core, now: DateTime<Utc>) -> CoreResult<u64> {
    use sea_orm::{ColumnTrait, QueryFilter};
    let result = send_quota::Entity::delete_many()
        .filter(send_quota::Column::WindowStart.lt(now - Duration::days(2)))
        .exec(&core.db)
        .await
        .context("Failed to purge old send quota windows")?;
    Ok(result.rows_affected)
}
