//! What the registration operations return: plain structs. REST serialises
//! them under the legacy names, GraphQL wraps them in its output types.
use chrono::{DateTime, Utc};
use entity::states::Channel;
use uuid::Uuid;

use crate::domain::{IssuedCode, Registration, Rules};

/// A pending registration and its current SMS code, as returned by register
/// and by both resends.
#[derive(Debug, Clone)]
pub struct RegistrationTicket {
    pub id: Uuid,
    /// The phone number in E.164 form: the customer's username.
    pub phone: String,
    pub token_prefix: String,
    /// Which SMS the code came in: 1 at registration, then one more per resend.
    pub attempt: u32,
    /// Whether the current code can still complete the registration.
    pub active: bool,
    pub expiry_minutes: u32,
    pub expiry_timestamp: DateTime<Utc>,
    pub request_timestamp: DateTime<Utc>,
    pub account_group_id: String,
    pub attempts_remaining: u32,
    pub sms_resends_remaining: u32,
    pub email_resends_remaining: u32,
    /// Earliest time a new SMS may be requested; `None` when no more may.
    pub next_resend_at: Option<DateTime<Utc>>,
}

impl RegistrationTicket {
    /// Every figure comes from the registration's own rules.
    pub fn new(
        registration: &Registration,
        code: &IssuedCode,
        rules: &Rules,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: registration.id,
            phone: registration.phone.as_str().to_owned(),
            token_prefix: code.prefix.clone(),
            attempt: code.attempt,
            active: registration.code_is_usable(code, now, rules),
            expiry_minutes: u32::try_from(rules.token_expiry.num_minutes()).unwrap_or(u32::MAX),
            expiry_timestamp: code.expires_at,
            request_timestamp: code.created_at,
            account_group_id: registration.account_group_id.clone(),
            attempts_remaining: registration.attempts_remaining(rules),
            sms_resends_remaining: registration.sends_remaining(Channel::Sms, rules),
            email_resends_remaining: registration.sends_remaining(Channel::Email, rules),
            next_resend_at: registration.next_send_at(Channel::Sms, rules),
        }
    }
}

/// The customer created by a successful confirmation.
#[derive(Debug, Clone)]
pub struct ConfirmedRegistration {
    /// The registration request that was completed.
    pub id: Uuid,
    pub customer_id: Uuid,
    /// E.164 phone number.
    pub username: String,
    pub completed_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct UsernameAvailability {
    /// As normalised: E.164.
    pub username: String,
    pub exists: bool,
}

#[derive(Debug, Clone)]
pub struct EmailAvailability {
    /// As normalised: trimmed, lower case.
    pub email: String,
    pub exists: bool,
}

/// The customer a completed registration created.
#[derive(Debug, Clone)]
pub struct CustomerSummary {
    pub id: Uuid,
    pub username: String,
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
}
