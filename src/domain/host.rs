//! The host a request acts for.
use entity::host;
use uuid::Uuid;

use super::{MonthlySmsBudget, SmsAutofill};

/// The caller of every operation, established from its bearer token.
#[derive(Debug, Clone)]
pub struct AuthenticatedHost {
    pub id: Uuid,
    pub name: String,
    /// What its customers' SMS carry for autofill.
    pub autofill: SmsAutofill,
    /// The most SMS it may have queued in a calendar month; none: no cap.
    pub monthly_sms_budget: Option<MonthlySmsBudget>,
}

impl AuthenticatedHost {
    pub fn from_row(host: host::Model) -> Self {
        Self {
            id: host.id,
            name: host.name,
            autofill: SmsAutofill::from_stored(host.webotp_domain, host.android_app_hash),
            monthly_sms_budget: MonthlySmsBudget::from_stored(host.monthly_sms_budget),
        }
    }
}
