//! The legacy REST contract as JSON: request fields under their documented
//! names, read leniently so one answer can name every bad field, and the
//! response bodies the mobile backends parse. The `schema` attributes and
//! doc comments here are the OpenAPI document's (`http::openapi`): they
//! describe what the service accepts, which is narrower than the legacy
//! spec's types in places (`docs/API-DESIGN.md`, "Deviations").
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, de::DeserializeOwned};
use utoipa::{IntoParams, ToSchema};
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

// A missing field is `Field::Absent`, for the core to call `required`. The
// default is set on each field, not on the struct: on the struct utoipa
// would print every field's default into the document.

/// `POST /b2b/customer/register`. Every field is read whatever its JSON
/// type: one of another type (a number where a string belongs, as in the
/// legacy sample) is reported in `details` as `invalid_type`, with every
/// other bad field, in one 400 `VALIDATION_FAILED`. Strings are trimmed
/// before they are checked (the patterns and lengths here are of the
/// trimmed text); a blank optional field counts as absent, a blank required
/// one as missing; `null` counts as absent. Unknown members are ignored.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    /// The customer's mobile number, which becomes the username: written
    /// nationally (`081234567890`, read in the `countryId` country) or
    /// internationally (`+6281234567890`); at most 32 characters. Its
    /// country must be one the operator allows (`country_not_allowed`).
    #[schema(value_type = String, required = true, example = "081234567890")]
    #[serde(default)]
    phone: Lenient<String>,
    /// At most 100 characters, no control characters.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 100, example = "Septian Cahyo")]
    #[serde(default)]
    name: Lenient<String>,
    /// A date before today and not before 1900-01-01, written `YYYY-MM-DD`
    /// as a JSON string (the spec's `Date`).
    #[schema(value_type = String, format = Date, required = true, example = "1990-12-31")]
    #[serde(default)]
    birth_date: Lenient<String>,
    /// At most 100 characters, no control characters.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 100, example = "Jakarta")]
    #[serde(default)]
    birth_place: Lenient<String>,
    /// Optional; stored lower-case. With it, a completion link is emailed.
    #[schema(value_type = Option<String>, format = Email, example = "email@gmail.com")]
    #[serde(default)]
    email: Lenient<String>,
    /// A JSON boolean; strings such as `"true"` are refused.
    #[schema(value_type = bool, required = true, example = true)]
    #[serde(default)]
    gender: Lenient<bool>,
    /// An ISO 3166-1 alpha-2 country code, any case.
    #[schema(value_type = String, required = true, pattern = "^[A-Za-z]{2}$", example = "ID")]
    #[serde(default)]
    country_id: Lenient<String>,
    /// Optional; 1 to 32 letters, digits, `-` or `_`, as a JSON string.
    #[schema(value_type = Option<String>, pattern = "^[A-Za-z0-9_-]{1,32}$", example = "01011")]
    #[serde(default)]
    source_id: Lenient<String>,
    /// 1 to 16 letters, digits, `-` or `_`, as a JSON string, naming an
    /// existing account group (`unknown_account_group` otherwise).
    #[schema(value_type = String, required = true, pattern = "^[A-Za-z0-9_-]{1,16}$", example = "01")]
    #[serde(default)]
    account_group_id: Lenient<String>,
    /// Not in the legacy spec. The language of the SMS and email: `id` or
    /// `en` (also `id-ID`, `en_US`, any case). Absent: `id` for country ID,
    /// else the configured default.
    #[schema(value_type = Option<String>, pattern = "^([iI][dD]|[eE][nN])([-_].*)?$", example = "id")]
    #[serde(default)]
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

/// `POST /b2b/customer/register/confirm`. Read like the register body:
/// a field of another JSON type is `invalid_type`, every problem at once.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ConfirmRequest {
    /// The phone number registered, written nationally or internationally.
    #[schema(value_type = String, required = true, example = "081234567890")]
    #[serde(default)]
    username: Lenient<String>,
    /// The MD5 of the password as 32 hexadecimal characters, either case.
    #[schema(
        value_type = String,
        required = true,
        pattern = "^[0-9A-Fa-f]{32}$",
        example = "5F4DCC3B5AA765D61D8327DEB882CF99"
    )]
    #[serde(default)]
    password: Lenient<String>,
    /// The code from the latest SMS: its 3-letter prefix, then 4 to 8
    /// digits. Required, although the legacy spec leaves it nullable.
    #[schema(value_type = String, required = true, pattern = "^[A-Za-z]{3}[0-9]{4,8}$", example = "UHY123456")]
    #[serde(default)]
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
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ResendRequest {
    /// The phone number registered, written nationally or internationally.
    #[schema(value_type = String, required = true, example = "081234567890")]
    #[serde(default)]
    username: Lenient<String>,
    /// The same number as `username`, in any writing (`mismatch` otherwise).
    #[schema(value_type = String, required = true, example = "+6281234567890")]
    #[serde(default)]
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

// The query fields are `Option` so that a missing one reaches the core,
// which answers `required` like for any other field; the document says
// what a request needs.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsernameQuery {
    /// A phone number, written nationally or internationally.
    #[param(value_type = String, required = true, example = "081234567890")]
    pub username: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EmailQuery {
    /// An email address; compared lower-case.
    #[param(value_type = String, required = true, example = "email@gmail.com")]
    pub email: Option<String>,
}

/// Register and both resends answer with the registration and its code.
/// Times are RFC 3339 in UTC, written `+00:00`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TicketBody {
    /// Registration request id.
    id: Uuid,
    /// The customer's username: the phone number in E.164 form.
    #[schema(example = "+6281234567890")]
    username: String,
    /// The same number as `username`.
    #[schema(example = "+6281234567890")]
    phone: String,
    /// The 3 letters the SMS code starts with.
    #[schema(example = "UHY")]
    token_prefix: String,
    /// Always `SMS`.
    #[schema(example = "SMS")]
    token_type: &'static str,
    /// Which SMS the code came in: 1 at registration, then one more per resend.
    attempt: u32,
    /// Whether the current code can still complete the registration.
    active: bool,
    /// How long a code lives, in minutes.
    expiry_minutes: u32,
    /// When the current code expires.
    #[serde(serialize_with = "timestamp")]
    expiry_timestamp: DateTime<Utc>,
    /// When the current code was issued.
    #[serde(serialize_with = "timestamp")]
    request_timestamp: DateTime<Utc>,
    /// The account group the customer joins.
    #[schema(example = "01")]
    account_group_id: String,
    /// `accountGroupId` under the legacy spec's misspelling, which existing
    /// clients parse; always the same value.
    #[schema(example = "01", deprecated)]
    account_groip_id: String,
    /// Wrong codes still allowed before the registration locks.
    attempts_remaining: u32,
    /// SMS resends still allowed.
    sms_resends_remaining: u32,
    /// Email resends still allowed.
    email_resends_remaining: u32,
    /// Earliest time a new SMS may be requested; `null` when no more may.
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

/// The customer a confirmation created. Not in the legacy spec, which
/// documents no response body for confirm.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfirmedBody {
    /// The registration request id.
    id: Uuid,
    /// The new customer's id.
    customer_id: Uuid,
    /// The phone number in E.164 form.
    #[schema(example = "+6281234567890")]
    username: String,
    /// RFC 3339 in UTC, written `+00:00`.
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

#[derive(Serialize, ToSchema)]
pub struct UsernameBody {
    /// The number asked about, in E.164 form.
    #[schema(example = "+6281234567890")]
    username: String,
    /// Whether a customer already has this username.
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

#[derive(Serialize, ToSchema)]
pub struct EmailBody {
    /// The legacy spec's member: the email asked about, normalised like
    /// `email`. Never the phone number of whoever has it, which would tell
    /// any host whose the address is.
    #[schema(example = "email@gmail.com")]
    username: String,
    /// The email asked about, trimmed and lower-case.
    #[schema(example = "email@gmail.com")]
    email: String,
    /// Whether a customer already has this email.
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
