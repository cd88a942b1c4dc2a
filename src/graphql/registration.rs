//! A host's registrations as GraphQL objects; related data comes through
//! the request's DataLoaders.
use async_graphql::{ComplexObject, Context, Enum, Result, SimpleObject};
use chrono::{DateTime, Utc};
use entity::states;
use uuid::Uuid;

use super::{delivery::Delivery, loaders::RequestLoaders};
use crate::domain::{self, Rules};

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "states::RegistrationStatus")]
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
    pub sms_sends: u32,
    pub email_sends: u32,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    #[graphql(skip)]
    pub account_group_id: String,
}

impl Registration {
    pub fn new(registration: domain::Registration, rules: &Rules) -> Self {
        Self {
            attempts_remaining: registration.attempts_remaining(rules),
            id: registration.id,
            username: registration.phone.as_str().to_owned(),
            email: registration.email,
            name: registration.name,
            status: registration.status.into(),
            sms_sends: registration.sms.count,
            email_sends: registration.email_sends.count,
            created_at: registration.created_at,
            completed_at: registration.completed_at,
            account_group_id: registration.account_group_id,
        }
    }
}

/// The latest SMS token of a registration (never its digits).
#[derive(SimpleObject)]
pub struct SmsTokenInfo {
    pub prefix: String,
    /// 1 for the SMS sent at registration, then one more per resend.
    pub attempt: u32,
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
        let loader = ctx.data::<RequestLoaders>()?.current_code();
        Ok(loader.load_one(self.id).await?.map(|code| SmsTokenInfo {
            prefix: code.prefix,
            attempt: code.attempt,
            request_timestamp: code.created_at,
            expiry_timestamp: code.expires_at,
        }))
    }

    async fn account_group(&self, ctx: &Context<'_>) -> Result<Option<AccountGroup>> {
        let loader = ctx.data::<RequestLoaders>()?.account_group();
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
        let loader = ctx.data::<RequestLoaders>()?.deliveries();
        let deliveries = loader.load_one(self.id).await?.unwrap_or_default();
        Ok(deliveries.into_iter().map(Delivery::from).collect())
    }

    async fn customer(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        let loader = ctx.data::<RequestLoaders>()?.customer();
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
