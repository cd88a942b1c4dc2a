//! A host's sends counted from the outbox: by day, channel, country and
//! outcome, and the SMS it queued since a moment (to start a budget's
//! count). Both group in the database; no recipient is read back.
use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use entity::{
    outbox_message, registration,
    states::{Channel, OutboxStatus},
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, JoinType, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, RelationDef, sea_query::Expr,
};
use uuid::Uuid;

use crate::error::CoreResult;

/// The messages of one day (UTC), channel, country and outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendCount {
    pub day: NaiveDate,
    pub channel: Channel,
    /// The SMS recipient's country; none for email (and for SMS queued
    /// before countries were recorded).
    pub country: Option<String>,
    /// Where the message stands now.
    pub outcome: OutboxStatus,
    pub count: u64,
}

/// The host's SMS and emails queued from `from` until before `until`,
/// grouped, in order of day, channel, country and outcome. Webhooks to the
/// host itself are not sends. Messages go with their registrations when
/// those are purged (`retention.unconfirmed_registration_days`).
pub async fn sends_by_day(
    db: &impl ConnectionTrait,
    host_id: Uuid,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> CoreResult<Vec<SendCount>> {
    let day = day_of(db.get_database_backend());
    let rows: Vec<(String, Channel, Option<String>, OutboxStatus, i64)> = of_host(host_id)
        .select_only()
        .column_as(Expr::cust(day), "day")
        .column(outbox_message::Column::Channel)
        .column(outbox_message::Column::Country)
        .column(outbox_message::Column::Status)
        .column_as(outbox_message::Column::Id.count(), "count")
        .filter(outbox_message::Column::Channel.is_in(Channel::TO_CUSTOMER))
        .filter(outbox_message::Column::CreatedAt.gte(from))
        .filter(outbox_message::Column::CreatedAt.lt(until))
        .group_by(Expr::cust(day))
        .group_by(outbox_message::Column::Channel)
        .group_by(outbox_message::Column::Country)
        .group_by(outbox_message::Column::Status)
        .order_by_asc(Expr::cust(day))
        .into_tuple()
        .all(db)
        .await
        .context("Failed to count the host's sends")?;
    let mut counts = rows
        .into_iter()
        .map(|(day, channel, country, outcome, count)| {
            Ok(SendCount {
                day: NaiveDate::parse_from_str(&day, "%Y-%m-%d")
                    .with_context(|| format!("the database gave the day {day:?}"))?,
                channel,
                country,
                outcome,
                count: u64::try_from(count).unwrap_or(0),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Stored enums sort differently per database: order them here.
    counts.sort_by(|a, b| {
        (a.day, a.channel.name(), &a.country, a.outcome.name()).cmp(&(
            b.day,
            b.channel.name(),
            &b.country,
            b.outcome.name(),
        ))
    });
    Ok(counts)
}

/// How many SMS the host queued from `since` on, whatever became of them.
pub async fn sms_queued_since(
    db: &impl ConnectionTrait,
    host_id: Uuid,
    since: DateTime<Utc>,
) -> CoreResult<u64> {
    Ok(of_host(host_id)
        .filter(outbox_message::Column::Channel.eq(Channel::Sms))
        .filter(outbox_message::Column::CreatedAt.gte(since))
        .count(db)
        .await
        .context("Failed to count the host's SMS")?)
}

fn of_host(host_id: Uuid) -> sea_orm::Select<outbox_message::Entity> {
    outbox_message::Entity::find()
        .join(JoinType::InnerJoin, to_registration())
        .filter(registration::Column::HostId.eq(host_id))
}

fn to_registration() -> RelationDef {
    outbox_message::Entity::belongs_to(registration::Entity)
        .from(outbox_message::Column::RegistrationId)
        .to(registration::Column::Id)
        .into()
}

/// The UTC day of `created_at` as `YYYY-MM-DD`, in each database's words.
/// Times are stored in UTC: SQLite's text starts with the date, and MySQL
/// connections run with the UTC time zone.
fn day_of(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => {
            r#"to_char("outbox_message"."created_at" AT TIME ZONE 'UTC', 'YYYY-MM-DD')"#
        }
        DbBackend::MySql => "DATE_FORMAT(`outbox_message`.`created_at`, '%Y-%m-%d')",
        _ => r#"substr("outbox_message"."created_at", 1, 10)"#,
    }
}
