use async_graphql::{Context, ID, Object, Result};
use uuid::Uuid;

use super::{
    outputs::{EmailAvailability, UsernameAvailability},
    registration::{Registration, RegistrationPage},
    spend::SendStatistics,
    webhooks::WebhookDeliveryPage,
};
use crate::{
    error::{AuthFailure, CoreError},
    service::{
        hosts::AuthenticatedHost,
        registration::{self, queries},
        spend, webhooks,
    },
    state::Core,
};

pub struct QueryRoot;

const MAX_PAGE: i32 = 100;

#[Object]
impl QueryRoot {
    /// Whether a registered customer holds this username (phone number).
    async fn verify_username(
        &self,
        ctx: &Context<'_>,
        username: String,
    ) -> Result<UsernameAvailability> {
        let availability =
            registration::verify_username(ctx.data()?, caller(ctx)?, Some(username).into()).await?;
        Ok(availability.into())
    }

    /// Whether a registered customer holds this email.
    async fn verify_email(&self, ctx: &Context<'_>, email: String) -> Result<EmailAvailability> {
        let availability =
            registration::verify_email(ctx.data()?, caller(ctx)?, Some(email).into()).await?;
        Ok(availability.into())
    }

    /// One of the calling host's registrations.
    async fn registration(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Registration>> {
        let core = ctx.data::<Core>()?;
        let Ok(id) = Uuid::parse_str(&id) else {
            return Err(CoreError::field(
                "id",
                "invalid_id",
                "id must be a registration id (UUID)",
            )
            .into());
        };
        let found = queries::find_registration(core, caller(ctx)?, id).await?;
        Ok(found.map(|r| Registration::new(r, &core.rules)))
    }

    /// The calling host's registrations, newest first.
    async fn registrations(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, desc = "Page size, 1 to 100.")] first: i32,
        #[graphql(desc = "`nextCursor` of the previous page.")] after: Option<String>,
    ) -> Result<RegistrationPage> {
        let core = ctx.data::<Core>()?;
        let (first, after) = page(first, after)?;
        let (records, has_more) =
            queries::list_registrations(core, caller(ctx)?, first, after).await?;
        let next_cursor = has_more
            .then(|| records.last().map(|r| r.id.to_string()))
            .flatten();
        Ok(RegistrationPage {
            items: records
                .into_iter()
                .map(|r| Registration::new(r, &core.rules))
                .collect(),
            next_cursor,
        })
    }

    /// The calling host's signed webhooks, newest first, with how each
    /// delivery went.
    async fn webhook_deliveries(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, desc = "Page size, 1 to 100.")] first: i32,
        #[graphql(desc = "`nextCursor` of the previous page.")] after: Option<String>,
    ) -> Result<WebhookDeliveryPage> {
        let (first, after) = page(first, after)?;
        let (items, has_more) =
            webhooks::list_deliveries(ctx.data()?, caller(ctx)?, first, after).await?;
        let next_cursor = has_more
            .then(|| items.last().map(|d| d.id.to_string()))
            .flatten();
        Ok(WebhookDeliveryPage {
            items: items.into_iter().map(Into::into).collect(),
            next_cursor,
        })
    }

    /// The calling host's SMS and emails by day, channel, country and
    /// outcome, with its monthly SMS budget. Days are UTC; `from` and `to`
    /// (`YYYY-MM-DD`, both included, at most 92 days apart) default to this
    /// month so far.
    async fn send_statistics(
        &self,
        ctx: &Context<'_>,
        from: Option<String>,
        to: Option<String>,
    ) -> Result<SendStatistics> {
        let statistics =
            spend::send_statistics(ctx.data()?, caller(ctx)?, from.as_deref(), to.as_deref())
                .await?;
        Ok(statistics.into())
    }
}

/// A page's size and cursor, checked.
fn page(first: i32, after: Option<String>) -> Result<(u64, Option<Uuid>)> {
    if !(1..=MAX_PAGE).contains(&first) {
        return Err(
            CoreError::field("first", "out_of_range", "first must be between 1 and 100").into(),
        );
    }
    let after = match after {
        Some(cursor) => Some(Uuid::parse_str(&cursor).map_err(|_| {
            CoreError::field(
                "after",
                "invalid_cursor",
                "after must be a nextCursor from a previous page",
            )
        })?),
        None => None,
    };
    Ok((u64::try_from(first).unwrap_or(20), after))
}

/// The host the HTTP layer authenticated.
pub fn caller<'a>(ctx: &Context<'a>) -> Result<&'a AuthenticatedHost> {
    ctx.data::<AuthenticatedHost>()
        .map_err(|_| CoreError::Unauthenticated(AuthFailure::MissingToken).into())
}
