//! The calling host's sends and its SMS budget.
use async_graphql::SimpleObject;
use chrono::{DateTime, Utc};

use super::delivery::{DeliveryChannel, DeliveryStatus};
use crate::service::{outbox, spend};

/// The host's sends over a range of days, and its SMS budget.
#[derive(SimpleObject)]
pub struct SendStatistics {
    /// The first day covered (UTC), `YYYY-MM-DD`.
    pub from: String,
    /// The last day covered (UTC), included.
    pub to: String,
    /// Counts by day, channel, country and outcome, in that order; days and
    /// groups without messages are left out.
    pub sends: Vec<SendCount>,
    /// This month's SMS budget and its use; absent when the host has none.
    pub sms_budget: Option<SmsBudget>,
}

/// The SMS or emails of one day, channel, country and outcome.
#[derive(SimpleObject)]
pub struct SendCount {
    /// `YYYY-MM-DD`, the day (UTC) the message was queued.
    pub day: String,
    pub channel: DeliveryChannel,
    /// The SMS recipient's country (ISO 3166-1 alpha-2); absent for email.
    pub country: Option<String>,
    /// Where the messages stand now (`DELIVERED` needs a provider receipt).
    pub outcome: DeliveryStatus,
    pub count: u64,
}

/// A monthly SMS budget (set by the operator) and how much of it is used.
#[derive(SimpleObject)]
pub struct SmsBudget {
    /// `2026-12`: the calendar month in UTC.
    pub month: String,
    pub monthly_sms: u32,
    /// SMS queued this month, including those later cancelled or failed.
    pub sms_queued: u32,
    pub remaining: u32,
    /// When the 80 % warning webhook was queued this month.
    pub warned_at: Option<DateTime<Utc>>,
    /// When the count starts again.
    pub renews_at: DateTime<Utc>,
}

impl From<spend::SendStatistics> for SendStatistics {
    fn from(s: spend::SendStatistics) -> Self {
        Self {
            from: s.from.to_string(),
            to: s.to.to_string(),
            sends: s.sends.into_iter().map(Into::into).collect(),
            sms_budget: s.budget.map(Into::into),
        }
    }
}

impl From<outbox::SendCount> for SendCount {
    fn from(c: outbox::SendCount) -> Self {
        Self {
            day: c.day.to_string(),
            channel: c.channel.into(),
            country: c.country,
            outcome: c.outcome.into(),
            count: c.count,
        }
    }
}

impl From<spend::BudgetStatus> for SmsBudget {
    fn from(b: spend::BudgetStatus) -> Self {
        Self {
            remaining: b.remaining(),
            month: b.month.label(),
            monthly_sms: b.budget.sms(),
            sms_queued: b.sms_queued,
            warned_at: b.warned_at,
            renews_at: b.month.ends_at(),
        }
    }
}
