//! What the mutations and the availability queries return, wrapping the
//! core's plain results.
use async_graphql::SimpleObject;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::service::registration::views;

/// A pending registration and its current SMS token, as returned by
/// register and by both resends.
#[derive(SimpleObject)]
pub struct RegistrationTicket {
    /// Registration request id; names this registration in later calls.
    pub id: Uuid,
    /// The customer's username: the phone number in E.164 form.
    pub username: String,
    /// Phone number the SMS token goes to (E.164).
    pub phone: String,
    /// Prefix of the current SMS token; the customer types it before the digits.
    pub token_prefix: String,
    /// How the token is delivered: always `SMS`.
    pub token_type: &'static str,
    /// Which SMS this token came in: 1 at registration, then one more per resend.
    pub attempt: u32,
    /// Whether the current token can still complete the registration
    /// (not expired, not locked, registration still pending).
    pub active: bool,
    /// Lifetime of a token, in minutes.
    pub expiry_minutes: u32,
    /// When the current token expires.
    pub expiry_timestamp: DateTime<Utc>,
    /// When the current token was issued.
    pub request_timestamp: DateTime<Utc>,
    /// The account group the customer will join.
    pub account_group_id: String,
    /// Wrong codes still allowed before the registration locks.
    pub attempts_remaining: u32,
    /// SMS resends still allowed for this registration.
    pub sms_resends_remaining: u32,
    /// Email resends still allowed (0 when the registration has no email).
    pub email_resends_remaining: u32,
    /// Earliest time a new SMS may be requested; absent when no more resends are allowed.
    pub next_resend_at: Option<DateTime<Utc>>,
}

impl From<views::RegistrationTicket> for RegistrationTicket {
    fn from(t: views::RegistrationTicket) -> Self {
        Self {
            id: t.id,
            username: t.phone.clone(),
            phone: t.phone,
            token_prefix: t.token_prefix,
            token_type: "SMS",
            attempt: t.attempt,
            active: t.active,
            expiry_minutes: t.expiry_minutes,
            expiry_timestamp: t.expiry_timestamp,
            request_timestamp: t.request_timestamp,
            account_group_id: t.account_group_id,
            attempts_remaining: t.attempts_remaining,
            sms_resends_remaining: t.sms_resends_remaining,
            email_resends_remaining: t.email_resends_remaining,
            next_resend_at: t.next_resend_at,
        }
    }
}

/// The customer created by a successful confirmation.
#[derive(SimpleObject)]
pub struct ConfirmedRegistration {
    /// The registration request that was completed.
    pub id: Uuid,
    /// The new customer's id.
    pub customer_id: Uuid,
    /// The customer's username (E.164 phone number).
    pub username: String,
    /// When the customer was created.
    pub completed_at: DateTime<Utc>,
}

impl From<views::ConfirmedRegistration> for ConfirmedRegistration {
    fn from(c: views::ConfirmedRegistration) -> Self {
        Self {
            id: c.id,
            customer_id: c.customer_id,
            username: c.username,
            completed_at: c.completed_at,
        }
    }
}

#[derive(SimpleObject)]
pub struct UsernameAvailability {
    /// The username as normalised (E.164 phone number).
    pub username: String,
    /// True when a registered customer already holds this username.
    pub exists: bool,
}

impl From<views::UsernameAvailability> for UsernameAvailability {
    fn from(a: views::UsernameAvailability) -> Self {
        Self {
            username: a.username,
            exists: a.exists,
        }
    }
}

#[derive(SimpleObject)]
pub struct EmailAvailability {
    /// The email as normalised (trimmed, lower case).
    pub email: String,
    /// True when a registered customer already holds this email.
    pub exists: bool,
}

impl From<views::EmailAvailability> for EmailAvailability {
    fn from(a: views::EmailAvailability) -> Self {
        Self {
            email: a.email,
            exists: a.exists,
        }
    }
}
