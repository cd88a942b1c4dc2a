//! SMS spend per host: its monthly SMS budget (set from the CLI), counted
//! as each SMS is queued, a `host.budget_warning` webhook once a month at
//! 80 %, refusal beyond it; and the host's sends by day, channel, country
//! and outcome.
use std::collections::BTreeMap;

use anyhow::Context;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use entity::{host, host_sms_month, states::Channel};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait, OnConflict, Query},
};
use uuid::Uuid;

use crate::{
    domain::{BudgetMonth, MonthlySmsBudget},
    error::{CoreError, CoreResult, QuotaScope},
    service::{
        hosts::{self, AuthenticatedHost},
        outbox::{self, SendCount},
        quotas::Refusal,
        webhooks::{self, WebhookEvent},
    },
    state::Core,
};

/// The longest range `send_statistics` covers, in days.
pub const MAX_STATISTICS_DAYS: i64 = 92;

/// A budget and how much of the current month it has used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetStatus {
    pub budget: MonthlySmsBudget,
    pub month: BudgetMonth,
    /// SMS queued this month, counting those later cancelled or failed.
    pub sms_queued: u32,
    pub warned_at: Option<DateTime<Utc>>,
}

impl BudgetStatus {
    pub fn remaining(&self) -> u32 {
        self.budget.sms().saturating_sub(self.sms_queued)
    }
}

/// One SMS a transaction queues: for which host and registration, when.
#[derive(Debug, Clone, Copy)]
pub struct QueuedSms<'a> {
    pub host: &'a AuthenticatedHost,
    pub registration_id: Uuid,
    pub now: DateTime<Utc>,
}

/// Counts SMS queued for hosts against their monthly budgets, in the
/// caller's transaction (a refusal rolls the counts back with the rest),
/// one statement per host and month, hosts in id order (the order their
/// rows are locked in). Beyond a budget: a refusal until the month ends.
/// The SMS that reaches 80 % queues the month's one `host.budget_warning`.
/// A host without a budget is not counted: nothing is written.
pub async fn count_sms(
    core: &Core,
    txn: &DatabaseTransaction,
    queued: &[QueuedSms<'_>],
) -> CoreResult<Option<Refusal>> {
    let mut months: BTreeMap<(Uuid, String), Vec<QueuedSms<'_>>> = BTreeMap::new();
    for sms in queued
        .iter()
        .filter(|sms| sms.host.monthly_sms_budget.is_some())
    {
        let month = BudgetMonth::of(sms.now);
        months
            .entry((sms.host.id, month.label()))
            .or_default()
            .push(*sms);
    }
    for smses in months.values() {
        let Some(last) = smses.last() else { continue };
        let host = last.host;
        let Some(budget) = host.monthly_sms_budget else {
            continue;
        };
        let month = BudgetMonth::of(last.now);
        let added = u32::try_from(smses.len()).context("too many SMS in one transaction")?;
        let total = add(txn, host.id, month, added).await?;
        if !budget.allows(total) {
            return Ok(Some(Refusal {
                channel: Channel::Sms,
                scope: QuotaScope::MonthlyBudget,
                host_id: host.id,
                retry_after_seconds: month.seconds_left(last.now),
            }));
        }
        // The SMS that reached the warning share, counted one by one.
        let before = total - added;
        let reached = smses
            .iter()
            .zip(before + 1..)
            .find(|(_, queued)| budget.warns_at(*queued));
        if let Some((sms, queued)) = reached
            && mark_warned(txn, host.id, month, sms.now).await?
        {
            tracing::warn!(host = %host.name, month = %month.label(), budget = budget.sms(), queued, "host reached the warning share of its monthly SMS budget");
            let event =
                WebhookEvent::budget_warning(sms.registration_id, month, budget, queued, sms.now);
            webhooks::enqueue_event(&core.keys, txn, host.id, &event, sms.now).await?;
        }
    }
    Ok(None)
}

/// Adds `n` SMS to the host's month and reads the new count, its own
/// increment included: with RETURNING on PostgreSQL and SQLite; on MySQL,
/// which has none for upserts, by reading the row the transaction holds.
async fn add(
    txn: &DatabaseTransaction,
    host_id: Uuid,
    month: BudgetMonth,
    n: u32,
) -> CoreResult<u32> {
    let n = i32::try_from(n).context("SMS count out of range")?;
    let label = month.label();
    let mut upsert = Query::insert()
        .into_table(host_sms_month::Entity)
        .columns([
            host_sms_month::Column::HostId,
            host_sms_month::Column::Month,
            host_sms_month::Column::SmsQueued,
        ])
        .values([host_id.into(), label.clone().into(), n.into()])
        .context("Failed to build an SMS budget count")?
        .on_conflict(
            OnConflict::columns([
                host_sms_month::Column::HostId,
                host_sms_month::Column::Month,
            ])
            .value(
                host_sms_month::Column::SmsQueued,
                Expr::col((host_sms_month::Entity, host_sms_month::Column::SmsQueued)).add(n),
            )
            .to_owned(),
        )
        .to_owned();
    let queued: i32 = if txn.get_database_backend() == DbBackend::MySql {
        txn.execute(&upsert)
            .await
            .context("Failed to count an SMS against the budget")?;
        host_sms_month::Entity::find_by_id((host_id, label))
            .one(txn)
            .await
            .context("Failed to read the month's SMS count")?
            // Just written in this transaction: missing, the transaction is
            // gone (see `quotas::add`).
            .ok_or(crate::db::TransactionEndedByCluster)
            .context("the SMS budget count is missing")?
            .sms_queued
    } else {
        upsert.returning_col(host_sms_month::Column::SmsQueued);
        txn.query_one(&upsert)
            .await
            .context("Failed to count an SMS against the budget")?
            .context("the SMS budget count returned no row")?
            .try_get("", "sms_queued")
            .context("Failed to read the month's SMS count")?
    };
    Ok(u32::try_from(queued).unwrap_or(0))
}

/// Records that the month's warning is going out; false when it already
/// has (a conditional update, so concurrent sends warn exactly once).
async fn mark_warned(
    txn: &DatabaseTransaction,
    host_id: Uuid,
    month: BudgetMonth,
    now: DateTime<Utc>,
) -> CoreResult<bool> {
    let marked = host_sms_month::Entity::update_many()
        .col_expr(host_sms_month::Column::WarnedAt, Expr::value(now))
        .filter(host_sms_month::Column::HostId.eq(host_id))
        .filter(host_sms_month::Column::Month.eq(month.label()))
        .filter(host_sms_month::Column::WarnedAt.is_null())
        .exec(txn)
        .await
        .context("Failed to record the budget warning")?;
    Ok(marked.rows_affected == 1)
}

/// Sets (or, with `None`, removes) the host's monthly SMS budget. A budget
/// set mid-month starts from the SMS the host already queued this month,
/// and its warning can go out again (the share it warns at has moved).
/// Instances that cached the host's access tokens apply the change within
/// `auth.token_cache_seconds`.
pub async fn set_budget(
    core: &Core,
    host_name: &str,
    budget: Option<MonthlySmsBudget>,
) -> CoreResult<Option<BudgetStatus>> {
    let found = hosts::find_by_name(core, host_name).await?;
    host::Entity::update_many()
        .col_expr(
            host::Column::MonthlySmsBudget,
            Expr::value(budget.map(|b| i32::try_from(b.sms()).unwrap_or(i32::MAX))),
        )
        .filter(host::Column::Id.eq(found.id))
        .exec(&core.db)
        .await
        .context("Failed to set the host's SMS budget")?;
    core.tokens.forget_host(found.id);
    let Some(budget) = budget else {
        tracing::info!(host = host_name, "monthly SMS budget removed");
        return Ok(None);
    };
    let now = core.clock.now();
    let month = BudgetMonth::of(now);
    let already = outbox::sms_queued_since(&core.db, found.id, month.starts_at()).await?;
    let already = i32::try_from(already).unwrap_or(i32::MAX);
    start_month(&core.db, found.id, month, already).await?;
    tracing::info!(
        host = host_name,
        budget = budget.sms(),
        "monthly SMS budget set"
    );
    budget_status(&core.db, found.id, Some(budget), now).await
}

/// Makes sure the month's count holds at least `already` and re-arms its
/// warning. Two statements, each safe against concurrent sends: the upsert
/// never lowers a count, the update only raises it.
async fn start_month(
    db: &impl ConnectionTrait,
    host_id: Uuid,
    month: BudgetMonth,
    already: i32,
) -> CoreResult<()> {
    let upsert = Query::insert()
        .into_table(host_sms_month::Entity)
        .columns([
            host_sms_month::Column::HostId,
            host_sms_month::Column::Month,
            host_sms_month::Column::SmsQueued,
        ])
        .values([host_id.into(), month.label().into(), already.into()])
        .context("Failed to build the month's SMS count")?
        .on_conflict(
            OnConflict::columns([
                host_sms_month::Column::HostId,
                host_sms_month::Column::Month,
            ])
            .value(
                host_sms_month::Column::WarnedAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .to_owned(),
        )
        .to_owned();
    db.execute(&upsert)
        .await
        .context("Failed to start the month's SMS count")?;
    host_sms_month::Entity::update_many()
        .col_expr(host_sms_month::Column::SmsQueued, Expr::value(already))
        .filter(host_sms_month::Column::HostId.eq(host_id))
        .filter(host_sms_month::Column::Month.eq(month.label()))
        .filter(host_sms_month::Column::SmsQueued.lt(already))
        .exec(db)
        .await
        .context("Failed to catch the month's SMS count up")?;
    Ok(())
}

/// The budget and this month's count; none without a budget.
pub async fn budget_status(
    db: &impl ConnectionTrait,
    host_id: Uuid,
    budget: Option<MonthlySmsBudget>,
    now: DateTime<Utc>,
) -> CoreResult<Option<BudgetStatus>> {
    let Some(budget) = budget else {
        return Ok(None);
    };
    let month = BudgetMonth::of(now);
    let row = host_sms_month::Entity::find_by_id((host_id, month.label()))
        .one(db)
        .await
        .context("Failed to read the month's SMS count")?;
    Ok(Some(BudgetStatus {
        budget,
        month,
        sms_queued: row
            .as_ref()
            .map_or(0, |r| u32::try_from(r.sms_queued).unwrap_or(0)),
        warned_at: row.and_then(|r| r.warned_at),
    }))
}

/// What a host asks about its sends.
#[derive(Debug, Clone)]
pub struct SendStatistics {
    /// The first and last day covered (UTC), both included.
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub sends: Vec<SendCount>,
    pub budget: Option<BudgetStatus>,
}

/// The calling host's SMS and emails by day, channel, country and outcome
/// from `from` to `to` (UTC days, both included; by default this month so
/// far), with its budget. At most [`MAX_STATISTICS_DAYS`] days at once.
pub async fn send_statistics(
    core: &Core,
    host: &AuthenticatedHost,
    from: Option<&str>,
    to: Option<&str>,
) -> CoreResult<SendStatistics> {
    let now = core.clock.now();
    let (from, to) = statistics_range(from, to, now)?;
    let start = BudgetMonth::midnight(from);
    let until = BudgetMonth::midnight(to) + Duration::days(1);
    let sends = outbox::sends_by_day(&core.db, host.id, start, until).await?;
    let budget = budget_status(&core.db, host.id, host.monthly_sms_budget, now).await?;
    Ok(SendStatistics {
        from,
        to,
        sends,
        budget,
    })
}

/// Reads `from` and `to` (`YYYY-MM-DD`), naming the field that breaks a rule.
fn statistics_range(
    from: Option<&str>,
    to: Option<&str>,
    now: DateTime<Utc>,
) -> CoreResult<(NaiveDate, NaiveDate)> {
    let day = |field: &str, raw: Option<&str>| -> CoreResult<Option<NaiveDate>> {
        raw.map(|raw| {
            NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d").map_err(|_| {
                CoreError::field(
                    field,
                    "invalid_date",
                    format!("{field} must be a date written YYYY-MM-DD"),
                )
            })
        })
        .transpose()
    };
    let today = now.date_naive();
    let to = day("to", to)?.unwrap_or(today);
    let from =
        day("from", from)?.unwrap_or_else(|| std::cmp::min(BudgetMonth::of(now).first_day(), to));
    if to < from {
        return Err(CoreError::field(
            "to",
            "before_from",
            "to must be on or after from",
        ));
    }
    if (to - from).num_days() >= MAX_STATISTICS_DAYS {
        return Err(CoreError::field(
            "to",
            "range_too_long",
            format!("from and to may span at most {MAX_STATISTICS_DAYS} days"),
        ));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 15, 10, 0, 0).unwrap()
    }

    fn field_of(error: CoreError) -> (String, &'static str) {
        match error {
            CoreError::Validation(fields) => (fields[0].field.clone(), fields[0].code),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn the_range_defaults_to_this_month_so_far() {
        let (from, to) = statistics_range(None, None, now()).unwrap();
        assert_eq!(from.to_string(), "2026-12-01");
        assert_eq!(to.to_string(), "2026-12-15");
        let (from, to) = statistics_range(None, Some("2026-11-20"), now()).unwrap();
        assert_eq!(
            (from.to_string(), to.to_string()),
            ("2026-11-20".into(), "2026-11-20".into())
        );
    }

    #[test]
    fn a_bad_range_names_its_field_and_rule() {
        let cases = [
            (Some("15.12.2026"), None, ("from", "invalid_date")),
            (None, Some("2026-13-01"), ("to", "invalid_date")),
            (
                Some("2026-12-10"),
                Some("2026-12-09"),
                ("to", "before_from"),
            ),
            (
                Some("2026-01-01"),
                Some("2026-12-01"),
                ("to", "range_too_long"),
            ),
        ];
        for (from, to, (field, code)) in cases {
            let error = statistics_range(from, to, now()).unwrap_err();
            assert_eq!(
                field_of(error),
                (field.to_owned(), code),
                "{from:?}..{to:?}"
            );
        }
        let longest = statistics_range(Some("2026-01-01"), Some("2026-04-02"), now()).unwrap();
        assert_eq!((longest.1 - longest.0).num_days(), MAX_STATISTICS_DAYS - 1);
    }
}
