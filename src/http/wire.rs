//! The legacy REST contract as JSON: request fields under their documented
//! names, read leniently so one answer can name every bad field, and the
//! response bodies the mobile backends parse.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, de::DeserializeOwned};
use uuid::Uuid;

use crate::service::registration::{
    ConfirmInput, RegisterInput, ResendInput,
    input::Field,
    views::{ConfirmedRegistration, EmailAvailability, RegistrationTicket, UsernameAvailability},
};

/// A JSON field: absent or `null`, a value of the expected type, or a value
/// of another type, which does not abort reading the other fields.
#[derive(Debug, Default)]
pub struct Lenient<T>(Field<T>);

impl<'de, T: DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        if value.is_null() {
            return Ok(Self(Field::Absent));
        }
        Ok(Self(
            serde_json::from_value(value).map_or(Field::WrongType, Field::Present),
        ))
    }
}

/// `POST /b2b/customer/register`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RegisterRequest {
    phone: Lenient<String>,
    name: Lenient<String>,
    birth_date: Lenient<String>,
    birth_place: Lenient<String>,
    email: Lenient<String>,
    gender: Lenient<bool>,
    country_id: Lenient<String>,
    source_id: Lenient<String>,
    account_group_id: Lenient<String>,
    language: Lenient<String>,
}

impl From<RegisterRequest> for RegisterInput {
    fn from(r: RegisterRequest) -> Self {
        Self {
            phone: r.phone.0,
            name: r.name.0,
            birth_date: r.birth_date.0,
            birth_place: r.birth_place.0,
            email: r.email.0,
            gender: r.gender.0,
            country_id: r.country_id.0,
            source_id: r.source_id.0,
            account_group_id: r.account_group_id.0,
            language: r.language.0,
        }
    }
}

/// `POST /b2b/customer/register/confirm`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ConfirmRequest {
    username: Lenient<String>,
    password: Lenient<String>,
    token: Lenient<String>,
}

impl From<ConfirmRequest> for ConfirmInput {
    fn from(r: ConfirmRequest) -> Self {
        Self {
            username: r.username.0,
            password: r.password.0,
            token: r.token.0,
        }
    }
}

/// `POST /b2b/customer/resend/registration/{sms,email}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResendRequest {
    username: Lenient<String>,
    phone: Lenient<String>,
}

impl From<ResendRequest> for ResendInput {
    fn from(r: ResendRequest) -> Self {
        Self {
            username: r.username.0,
            phone: r.phone.0,
        }
    }
}

#[derive(Deserialize)]
pub struct UsernameQuery {
    pub username: Option<String>,
}

#[derive(Deserialize)]
pub struct EmailQuery {
    pub email: Option<String>,
}

/// Register and both resends answer with the registration and its code.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketBody {
    id: Uuid,
    username: String,
    phone: String,
    token_prefix: String,
    token_type: &'static str,
    attempt: u32,
    active: bool,
    expiry_minutes: u32,
    #[serde(serialize_with = "timestamp")]
    expiry_timestamp: DateTime<Utc>,
    #[serde(serialize_with = "timestamp")]
    request_timestamp: DateTime<Utc>,
    account_group_id: String,
    /// `accountGroupId` under the legacy spec's misspelling, which existing
    /// clients parse; always the same value.
    account_groip_id: String,
    attempts_remaining: u32,
    sms_resends_remaining: u32,
    email_resends_remaining: u32,
    #[serde(serialize_with = "optional_timestamp")]
    next_resend_at: Option<DateTime<Utc>>,
}

impl From<RegistrationTicket> for TicketBody {
    fn from(t: RegistrationTicket) -> Self {
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
            account_groip_id: t.account_group_id.clone(),
            account_group_id: t.account_group_id,
            attempts_remaining: t.attempts_remaining,
            sms_resends_remaining: t.sms_resends_remaining,
            email_resends_remaining: t.email_resends_remaining,
            next_resend_at: t.next_resend_at,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfirmedBody {
    id: Uuid,
    customer_id: Uuid,
    username: String,
    #[serde(serialize_with = "timestamp")]
    completed_at: DateTime<Utc>,
}

impl From<ConfirmedRegistration> for ConfirmedBody {
    fn from(c: ConfirmedRegistration) -> Self {
        Self {
            id: c.id,
            customer_id: c.customer_id,
            username: c.username,
            completed_at: c.completed_at,
        }
    }
}

#[derive(Serialize)]
pub struct UsernameBody {
    username: String,
    exists: bool,
}

impl From<UsernameAvailability> for UsernameBody {
    fn from(a: UsernameAvailability) -> Self {
        Self {
            username: a.username,
            exists: a.exists,
        }
    }
}

#[derive(Serialize)]
pub struct EmailBody {
    /// The legacy spec's member: the email asked about, normalised like
    /// `email`. Never the phone number of whoever has it, which would tell
    /// any host whose the address is.
    username: String,
    email: String,
    exists: bool,
}

impl From<EmailAvailability> for EmailBody {
    fn from(a: EmailAvailability) -> Self {
        Self {
            username: a.email.clone(),
            email: a.email,
            exists: a.exists,
        }
    }
}

/// Times are written exactly as GraphQL's `DateTime` writes them (RFC 3339,
/// `+00:00`), so a host reading both faces compares strings.
fn timestamp<S: serde::Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339())
}

fn optional_timestamp<S: serde::Serializer>(
    at: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => timestamp(at, serializer),
        None => serializer.serialize_none(),
    }
}
