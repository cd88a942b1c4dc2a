//! What operations return. These are the API's shapes, shared by REST
//! (serde, camelCase) and GraphQL (`SimpleObject`); database rows stay inside
//! the core.
use async_graphql::SimpleObject;
use chrono::{DateTime, Duration, Utc};
use entity::{registration, sms_token};
use serde::Serialize;
use uuid::Uuid;

use crate::config::RegistrationSettings;

/// A pending registration and its current SMS token, as returned by
/// register and by both resends.
#[derive(Debug, Clone, Serialize, SimpleObject)]
#[serde(rename_all = "camelCase")]
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
    pub token_type: String,
    /// Which SMS this token came in: 1 at registration, then one more per resend.
    pub attempt: i32,
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

impl RegistrationTicket {
    pub fn new(
        registration: &registration::Model,
        token: &sms_token::Model,
        settings: &RegistrationSettings,
        now: DateTime<Utc>,
    ) -> Self {
        let attempts_remaining = remaining(settings.max_wrong_codes, registration.failed_attempts);
        let sms_resends_remaining = remaining(settings.max_sends, registration.sms_sends);
        let email_resends_remaining = if registration.email.is_some() {
            remaining(settings.max_sends, registration.email_sends)
        } else {
            0
        };
        let cooldown = Duration::seconds(i64::from(settings.resend_cooldown_seconds));
        Self {
            id: registration.id,
            username: registration.phone.clone(),
            phone: registration.phone.clone(),
            token_prefix: token.prefix.clone(),
            token_type: "SMS".into(),
            attempt: token.attempt,
            active: registration.status == STATUS_PENDING
                && attempts_remaining > 0
                && token.superseded_at.is_none()
                && now < token.expires_at,
            expiry_minutes: settings.token_expiry_minutes,
            expiry_timestamp: token.expires_at,
            request_timestamp: token.created_at,
            account_group_id: registration.account_group_id.clone(),
            attempts_remaining,
            sms_resends_remaining,
            email_resends_remaining,
            next_resend_at: (sms_resends_remaining > 0)
                .then(|| registration.last_sms_at.map(|at| at + cooldown))
                .flatten(),
        }
    }
}

pub const STATUS_PENDING: &str = "pending";
pub const STATUS_COMPLETED: &str = "completed";
pub const STATUS_SUPERSEDED: &str = "superseded";

pub fn remaining(limit: u32, used: i32) -> u32 {
    limit.saturating_sub(u32::try_from(used).unwrap_or(0))
}

/// The customer created by a successful confirmation.
#[derive(Debug, Clone, Serialize, SimpleObject)]
#[serde(rename_all = "camelCase")]
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

#[derive(Debug, Clone, Serialize, SimpleObject)]
pub struct UsernameAvailability {
    /// The username as normalised (E.164 phone number).
    pub username: String,
    /// True when a registered customer already holds this username.
    pub exists: bool,
}

#[derive(Debug, Clone, Serialize, SimpleObject)]
pub struct EmailAvailability {
    /// The email as normalised (trimmed, lower case).
    pub email: String,
    /// True when a registered customer already holds this email.
    pub exists: bool,
}
