use async_graphql::{Context, ID, Object, Result};
use uuid::Uuid;

use super::{
    inputs::{ConfirmRegistrationInput, RegisterInput, ResendInput},
    outputs::{ConfirmedRegistration, RegistrationTicket},
    query::caller,
    webhooks::WebhookDelivery,
};
use crate::{
    error::CoreError,
    service::{registration, webhooks},
};

pub struct MutationRoot;

#[Object]
impl MutationRoot {
    /// Starts a registration: sends the SMS token and, with an email, the
    /// completion link. Supersedes this host's pending registration for the phone.
    async fn register(
        &self,
        ctx: &Context<'_>,
        input: RegisterInput,
    ) -> Result<RegistrationTicket> {
        let ticket =
            registration::register(ctx.data()?, caller(ctx)?, input.into(), ctx.data()?).await?;
        Ok(ticket.into())
    }

    /// Completes a registration with the SMS token; creates the customer.
    async fn confirm_registration(
        &self,
        ctx: &Context<'_>,
        input: ConfirmRegistrationInput,
    ) -> Result<ConfirmedRegistration> {
        let confirmed =
            registration::confirm(ctx.data()?, caller(ctx)?, input.into(), ctx.data()?).await?;
        Ok(confirmed.into())
    }

    /// Sends a new SMS token; the previous one stops working.
    async fn resend_registration_sms(
        &self,
        ctx: &Context<'_>,
        input: ResendInput,
    ) -> Result<RegistrationTicket> {
        let ticket = registration::resend_sms(ctx.data()?, caller(ctx)?, input.into()).await?;
        Ok(ticket.into())
    }

    /// Sends a new completion email; the previous link stops working.
    async fn resend_registration_email(
        &self,
        ctx: &Context<'_>,
        input: ResendInput,
    ) -> Result<RegistrationTicket> {
        let ticket = registration::resend_email(ctx.data()?, caller(ctx)?, input.into()).await?;
        Ok(ticket.into())
    }

    /// Sends one of the host's webhooks again: a new delivery with the same
    /// payload and the same `webhook-id`, to the endpoint as it is now.
    async fn replay_webhook_delivery(&self, ctx: &Context<'_>, id: ID) -> Result<WebhookDelivery> {
        let id = Uuid::parse_str(&id).map_err(|_| {
            CoreError::field(
                "id",
                "invalid_id",
                "id must be a webhook delivery id (UUID)",
            )
        })?;
        let replay = webhooks::replay(ctx.data()?, caller(ctx)?, id).await?;
        Ok(replay.into())
    }
}
