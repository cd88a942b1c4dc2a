//! A host's monthly SMS budget: how many SMS the service may queue for it
//! in a calendar month (UTC), and when it warns that most of it is used.
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};

use super::Invalid;

/// At most this many SMS a month: far beyond any host, small enough that
/// the counts fit the database's 32-bit integers with room to spare.
pub const MAX_MONTHLY_SMS: u32 = 100_000_000;

/// The host hears once a month when its queued SMS reach this share of
/// the budget (`host.budget_warning`).
pub const WARNING_PERCENT: u32 = 80;

/// Serialized as its number of SMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct MonthlySmsBudget(u32);

impl MonthlySmsBudget {
    pub fn parse(sms: i64) -> Result<Self, Invalid> {
        match u32::try_from(sms) {
            Ok(sms) if (1..=MAX_MONTHLY_SMS).contains(&sms) => Ok(Self(sms)),
            _ => Err(Invalid::new(
                "out_of_range",
                format!("must be a whole number of SMS from 1 to {MAX_MONTHLY_SMS}"),
            )),
        }
    }

    /// As stored on the host; a stored value out of range means no budget
    /// rather than a host that can send nothing.
    pub fn from_stored(sms: Option<i32>) -> Option<Self> {
        sms.and_then(|sms| Self::parse(i64::from(sms)).ok())
    }

    pub fn sms(self) -> u32 {
        self.0
    }

    /// Whether the month's `queued`-th SMS may go (the budget is the last).
    pub fn allows(self, queued: u32) -> bool {
        queued <= self.0
    }

    /// Whether `queued` SMS reach the warning share of the budget.
    pub fn warns_at(self, queued: u32) -> bool {
        u64::from(queued) * 100 >= u64::from(self.0) * u64::from(WARNING_PERCENT)
    }
}

/// A calendar month in UTC, the period a budget covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetMonth {
    first_day: NaiveDate,
}

impl BudgetMonth {
    pub fn of(at: DateTime<Utc>) -> Self {
        let first_day = at.date_naive().with_day(1).unwrap_or(at.date_naive());
        Self { first_day }
    }

    /// `2026-12`, as stored and as the webhook names it.
    pub fn label(self) -> String {
        self.first_day.format("%Y-%m").to_string()
    }

    pub fn first_day(self) -> NaiveDate {
        self.first_day
    }

    pub fn starts_at(self) -> DateTime<Utc> {
        Self::midnight(self.first_day)
    }

    /// The moment `day` begins in UTC.
    pub fn midnight(day: NaiveDate) -> DateTime<Utc> {
        Utc.from_utc_datetime(&day.and_time(chrono::NaiveTime::MIN))
    }

    pub fn ends_at(self) -> DateTime<Utc> {
        let next = self
            .first_day
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(NaiveDate::MAX);
        Self::midnight(next)
    }

    /// Whole seconds from `now` until the month ends (at least 1): a
    /// refusal's `Retry-After`.
    pub fn seconds_left(self, now: DateTime<Utc>) -> u64 {
        u64::try_from((self.ends_at() - now).num_seconds().max(1)).unwrap_or(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_is_a_positive_number_of_sms_within_the_maximum() {
        assert_eq!(MonthlySmsBudget::parse(1).map(MonthlySmsBudget::sms), Ok(1));
        assert!(MonthlySmsBudget::parse(i64::from(MAX_MONTHLY_SMS)).is_ok());
        for bad in [0, -5, i64::from(MAX_MONTHLY_SMS) + 1, i64::MAX] {
            let invalid = MonthlySmsBudget::parse(bad).unwrap_err();
            assert_eq!(invalid.code, "out_of_range");
        }
        assert_eq!(MonthlySmsBudget::from_stored(Some(0)), None);
        assert_eq!(MonthlySmsBudget::from_stored(None), None);
    }

    #[test]
    fn the_budget_allows_its_last_sms_and_warns_from_eighty_percent() {
        let budget = MonthlySmsBudget::parse(10).unwrap();
        assert!(budget.allows(10));
        assert!(!budget.allows(11));
        assert!(!budget.warns_at(7));
        assert!(budget.warns_at(8));
        // Rounds up: 80 % of 3 is 2.4, so the third SMS warns.
        let small = MonthlySmsBudget::parse(3).unwrap();
        assert!(!small.warns_at(2));
        assert!(small.warns_at(3));
        let largest = MonthlySmsBudget::parse(i64::from(MAX_MONTHLY_SMS)).unwrap();
        assert!(largest.warns_at(80_000_000));
        assert!(!largest.warns_at(79_999_999));
    }

    #[test]
    fn a_month_runs_from_its_first_midnight_to_the_next_months_in_utc() {
        let at = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 30).unwrap();
        let month = BudgetMonth::of(at);
        assert_eq!(month.label(), "2026-12");
        assert_eq!(
            month.starts_at(),
            Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            month.ends_at(),
            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(month.seconds_left(at), 30);
        let february = BudgetMonth::of(Utc.with_ymd_and_hms(2028, 2, 29, 12, 0, 0).unwrap());
        assert_eq!(february.label(), "2028-02");
        assert_eq!(
            february.ends_at(),
            Utc.with_ymd_and_hms(2028, 3, 1, 0, 0, 0).unwrap()
        );
    }
}
