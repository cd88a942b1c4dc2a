use async_graphql::{
    ComplexObject, Context, Enum, InputObject, Result, SimpleObject, dataloader::DataLoader,
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::loaders::{
    AccountGroupLoader, CurrentTokenLoader, CustomerLoader, DeliveriesLoader,
    DeliveryAttemptsLoader,
};
use crate::{
    domain::Field,
    service::{
        registration::{ConfirmRequest, RegisterRequest, RegistrationRecord, ResendRequest},
        views::{STATUS_COMPLETED, STATUS_PENDING, remaining},
    },
    state::Core,
};

/// Customer data for a new registration; the same fields and rules as
/// `POST /b2b/customer/register`.
#[derive(InputObject)]
pub struct RegisterInput {
    /// Phone number, national (read in `countryId`) or international.
    pub phone: String,
    pub name: String,
    /// Date of birth, `YYYY-MM-DD`.
    pub birth_date: String,
    pub birth_place: String,
    pub email: Option<String>,
    pub gender: bool,
    /// ISO 3166-1 alpha-2 country code, e.g. `ID`.
    pub country_id: String,
    pub source_id: Option<String>,
    pub account_group_id: String,
    /// Language of the SMS and email: `id` or `en`. Default: `id` for
    /// country `ID`, else the configured default.
    pub language: Option<String>,
}

impl From<RegisterInput> for RegisterRequest {
    fn from(input: RegisterInput) -> Self {
        Self {
            phone: Field::Present(input.phone),
            name: Field::Present(input.name),
            birth_date: Field::Present(input.birth_date),
            birth_place: Field::Present(input.birth_place),
            email: input.email.into(),
            gender: Field::Present(input.gender),
            country_id: Field::Present(input.country_id),
            source_id: input.source_id.into(),
            account_group_id: Field::Present(input.account_group_id),
            language: input.language.into(),
        }
    }
}

#[derive(InputObject)]
pub struct ConfirmRegistrationInput {
    /// The customer's username: the phone number.
    pub username: String,
    /// MD5 of the password as 32 hex characters (either case).
    #[graphql(secret)]
    pub password: String,
    /// The token from the SMS: prefix then digits, e.g. `UHY1234`.
    #[graphql(secret)]
    pub token: String,
}

impl From<ConfirmRegistrationInput> for ConfirmRequest {
    fn from(input: ConfirmRegistrationInput) -> Self {
        Self {
            username: Field::Present(input.username),
            password: Field::Present(input.password),
            token: Field::Present(input.token),
        }
    }
}

/// Names a pending registration: both fields are the same phone number.
#[derive(InputObject)]
pub struct ResendInput {
    pub username: String,
    pub phone: String,
}

impl From<ResendInput> for ResendRequest {
    fn from(input: ResendInput) -> Self {
        Self {
            username: Field::Present(input.username),
            phone: Field::Present(input.phone),
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum RegistrationStatus {
    /// Waiting for the customer to confirm.
    Pending,
    /// The customer exists.
    Completed,
    /// Replaced by a newer registration for the same phone.
    Superseded,
}

/// A registration of the calling host.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Registration {
    pub id: Uuid,
    /// Username and phone (E.164).
    pub username: String,
    pub email: Option<String>,
    pub name: String,
    pub status: RegistrationStatus,
    /// Wrong codes still allowed before the registration locks.
    pub attempts_remaining: u32,
    pub sms_sends: i32,
    pub email_sends: i32,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    #[graphql(skip)]
    pub account_group_id: String,
}

impl Registration {
    pub fn new(record: RegistrationRecord, core: &Core) -> Self {
        Self {
            id: record.id,
            username: record.phone,
            email: record.email,
            name: record.name,
            status: match record.status.as_str() {
                STATUS_PENDING => RegistrationStatus::Pending,
                STATUS_COMPLETED => RegistrationStatus::Completed,
                _ => RegistrationStatus::Superseded,
            },
            attempts_remaining: remaining(
                core.settings.registration.max_wrong_codes,
                record.failed_attempts,
            ),
            sms_sends: record.sms_sends,
            email_sends: record.email_sends,
            created_at: record.created_at,
            completed_at: record.completed_at,
            account_group_id: record.account_group_id,
        }
    }
}

/// The latest SMS token of a registration (never its digits).
#[derive(SimpleObject)]
pub struct SmsTokenInfo {
    pub prefix: String,
    /// 1 for the SMS sent at registration, then one more per resend.
    pub attempt: i32,
    pub request_timestamp: DateTime<Utc>,
    pub expiry_timestamp: DateTime<Utc>,
}

#[derive(SimpleObject)]
pub struct AccountGroup {
    pub id: String,
    pub name: String,
}

/// The customer a completed registration created.
#[derive(SimpleObject)]
pub struct Customer {
    pub id: Uuid,
    pub username: String,
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
}

#[ComplexObject]
impl Registration {
    async fn current_token(&self, ctx: &Context<'_>) -> Result<Option<SmsTokenInfo>> {
        let loader = ctx.data::<DataLoader<CurrentTokenLoader>>()?;
        Ok(loader.load_one(self.id).await?.map(|t| SmsTokenInfo {
            prefix: t.prefix,
            attempt: t.attempt,
            request_timestamp: t.created_at,
            expiry_timestamp: t.expires_at,
        }))
    }

    async fn account_group(&self, ctx: &Context<'_>) -> Result<Option<AccountGroup>> {
        let loader = ctx.data::<DataLoader<AccountGroupLoader>>()?;
        Ok(loader
            .load_one(self.account_group_id.clone())
            .await?
            .map(|g| AccountGroup {
                id: g.id,
                name: g.name,
            }))
    }

    /// The SMS and emails sent for this registration, oldest first.
    async fn deliveries(&self, ctx: &Context<'_>) -> Result<Vec<Delivery>> {
        let loader = ctx.data::<DataLoader<DeliveriesLoader>>()?;
        let messages = loader.load_one(self.id).await?.unwrap_or_default();
        Ok(messages.into_iter().map(Delivery::from).collect())
    }

    async fn customer(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        let loader = ctx.data::<DataLoader<CustomerLoader>>()?;
        Ok(loader.load_one(self.id).await?.map(|c| Customer {
            id: c.id,
            username: c.username,
            email_verified: c.email_verified,
            created_at: c.created_at,
        }))
    }
}

/// One page of registrations, newest first.
#[derive(SimpleObject)]
pub struct RegistrationPage {
    pub items: Vec<Registration>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum DeliveryChannel {
    Sms,
    Email,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum DeliveryStatus {
    /// Queued or waiting for a retry.
    Pending,
    /// Accepted by the SMTP server or SMS gateway.
    Sent,
    /// Given up on; an operator can retry it from the CLI.
    Dead,
}

/// One outgoing SMS or email and how its delivery went.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Delivery {
    pub id: Uuid,
    pub channel: DeliveryChannel,
    pub status: DeliveryStatus,
    /// Send attempts so far.
    pub attempts: i32,
    /// `transient` or `permanent`, of the last failure.
    pub last_error_class: Option<String>,
    pub last_error: Option<String>,
    pub queued_at: DateTime<Utc>,
    /// When the next try is due, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub sent_at: Option<DateTime<Utc>>,
    /// The SMTP Message-ID or the gateway's message id.
    pub provider_message_id: Option<String>,
}

impl From<entity::outbox_message::Model> for Delivery {
    fn from(m: entity::outbox_message::Model) -> Self {
        let status = match m.status.as_str() {
            "sent" => DeliveryStatus::Sent,
            "dead" => DeliveryStatus::Dead,
            _ => DeliveryStatus::Pending,
        };
        Self {
            id: m.id,
            channel: if m.channel == "email" {
                DeliveryChannel::Email
            } else {
                DeliveryChannel::Sms
            },
            status,
            attempts: m.attempts,
            last_error_class: m.last_error_class,
            last_error: m.last_error,
            queued_at: m.created_at,
            next_attempt_at: (status == DeliveryStatus::Pending).then_some(m.next_attempt_at),
            sent_at: m.sent_at,
            provider_message_id: m.provider_message_id,
        }
    }
}

/// One event of a delivery's timeline after it was queued.
#[derive(SimpleObject)]
pub struct DeliveryEvent {
    pub at: DateTime<Utc>,
    /// `sent`, `failed` (will retry), `dead` or `requeued` (by an operator).
    pub outcome: String,
    pub error_class: Option<String>,
    pub error: Option<String>,
    pub provider_message_id: Option<String>,
}

#[ComplexObject]
impl Delivery {
    /// Every attempt, oldest first.
    async fn timeline(&self, ctx: &Context<'_>) -> Result<Vec<DeliveryEvent>> {
        let loader = ctx.data::<DataLoader<DeliveryAttemptsLoader>>()?;
        let attempts = loader.load_one(self.id).await?.unwrap_or_default();
        Ok(attempts
            .into_iter()
            .map(|a| DeliveryEvent {
                at: a.attempted_at,
                outcome: a.outcome,
                error_class: a.error_class,
                error: a.error,
                provider_message_id: a.provider_message_id,
            })
            .collect())
    }
}
