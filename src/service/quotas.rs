//! Fixed-window counters kept in the database, so every instance shares
//! them: send quotas against SMS pumping and mail floods (per recipient,
//! per host and recipient, per host and overall) and request limits per
//! host against enumeration and register floods.
use anyhow::Context;
use chrono::{DateTime, Duration, TimeZone, Utc};
use entity::send_quota;
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, TransactionTrait,
    sea_query::{Expr, ExprTrait, OnConflict, Query},
};
use uuid::Uuid;

use entity::states::Channel;

use crate::{
    config::Quota,
    error::{CoreError, CoreResult, LimitedOperation, QuotaScope, quota_scope_name},
    service::{hosts::AuthenticatedHost, retrying},
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
        Channel::Webhook => return Ok(()),
    };
    // Recipients are hashed, keyed (128 bits kept): scopes stay well within
    // the 120-character column whatever the address's length, and the
    // table holds no phone numbers or emails.
    let mut recipient = core.keys.token_hash(recipient);
    recipient.truncate(32);
    let host_id = host_id.simple();
    let channel_name = channel.name();
    // Always in this order, so concurrent transactions lock rows alike.
    let scopes = [
        (
            per_recipient,
            QuotaScope::Recipient,
            format!("{channel_name}:recipient:{recipient}"),
        ),
        (
            per_host_recipient,
            QuotaScope::HostRecipient,
            format!("{channel_name}:host-recipient:{host_id}:{recipient}"),
        ),
        (
            per_host,
            QuotaScope::Host,
            format!("{channel_name}:host:{host_id}"),
        ),
        (global, QuotaScope::Global, format!("{channel_name}:global")),
    ];
    for (quota, scope_kind, scope) in scopes {
        if let Some(retry_after_seconds) = count(txn, scope, quota, now).await? {
            let scope_name = quota_scope_name(channel, scope_kind);
            core.metrics.refused_by_quota(channel, scope_name);
            tracing::warn!(channel = channel_name, scope = scope_name, %host_id, "send refused by quota");
            return Err(CoreError::SendQuotaExceeded {
                channel,
                scope: scope_kind,
                retry_after_seconds,
            });
        }
    }
    Ok(())
}

/// Counts one request of `operation` by the host, refusing it once the
/// host's limit for the window is used. Outside any transaction: a request
/// counts whether or not it then succeeds.
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
    let scope = format!("{}:host:{}", operation.name(), host.id);
    let now = core.clock.now();
    let refused = if core.db.get_database_backend() != DbBackend::MySql {
        count(&core.db, scope, quota, now).await?
    } else {
        retrying(core, || async {
            let txn = core
                .db
                .begin()
                .await
                .context("Failed to begin transaction")?;
            let refused = count(&txn, scope.clone(), quota, now).await?;
            txn.commit()
                .await
                .context("Failed to commit a quota count")?;
            Ok(refused)
        })
        .await?
    };
    match refused {
        None => Ok(()),
        Some(retry_after_seconds) => {
            tracing::warn!(host = %host.name, operation = operation.name(), "request refused by rate limit");
            Err(CoreError::RateLimited {
                operation,
                retry_after_seconds,
            })
        }
    }
}

/// Adds one to the scope's counter for the current window; when that goes
/// past the limit, the seconds until the window ends. A switched-off quota
/// (`limit = 0`) is not counted at all.
async fn count(
    db: &impl ConnectionTrait,
    scope: String,
    quota: Quota,
    now: DateTime<Utc>,
) -> CoreResult<Option<u64>> {
    if quota.limit == 0 {
        return Ok(None);
    }
    let (window_start, window_end) = window(now, quota);
    let mut upsert = Query::insert()
        .into_table(send_quota::Entity)
        .columns([
            send_quota::Column::Scope,
            send_quota::Column::WindowStart,
            send_quota::Column::Used,
        ])
        .values([scope.clone().into(), window_start.into(), 1.into()])
        .context("Failed to build a quota count")?
        .on_conflict(
            OnConflict::columns([send_quota::Column::Scope, send_quota::Column::WindowStart])
                .value(
                    send_quota::Column::Used,
                    Expr::col((send_quota::Entity, send_quota::Column::Used)).add(1),
                )
                .to_owned(),
        )
        .to_owned();
    let backend = db.get_database_backend();
    // The count this request made must be the one it reads: with RETURNING
    // in the same statement; on MySQL, which has none for upserts, inside
    // the caller's transaction (the row stays locked until it ends).
    let used: i32 = if backend == DbBackend::MySql {
        db.execute(&upsert)
            .await
            .context("Failed to count against a quota")?;
        send_quota::Entity::find_by_id((scope, window_start))
            .one(db)
            .await
            .context("Failed to read a quota")?
            .map_or(0, |row| row.used)
    } else {
        upsert.returning_col(send_quota::Column::Used);
        db.query_one(&upsert)
            .await
            .context("Failed to count against a quota")?
            .context("a quota count returned no row")?
            .try_get("", "used")
            .context("Failed to read a quota count")?
    };
    if u32::try_from(used).unwrap_or(u32::MAX) <= quota.limit {
        return Ok(None);
    }
    let retry_after = std::cmp::max((window_end - now).num_seconds(), 1);
    Ok(Some(u64::try_from(retry_after).unwrap_or(1)))
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
