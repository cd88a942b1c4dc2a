use async_graphql::{Context, Object, Result};

use super::{
    query::caller,
    types::{ConfirmRegistrationInput, RegisterInput, ResendInput},
};
use crate::service::{
    registration,
    views::{ConfirmedRegistration, RegistrationTicket},
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
        Ok(registration::register(ctx.data()?, caller(ctx)?, input.into()).await?)
    }

    /// Completes a registration with the SMS token; creates the customer.
    async fn confirm_registration(
        &self,
        ctx: &Context<'_>,
        input: ConfirmRegistrationInput,
    ) -> Result<ConfirmedRegistration> {
        Ok(registration::confirm(ctx.data()?, caller(ctx)?, input.into()).await?)
    }

    /// Sends a new SMS token; the previous one stops working.
    async fn resend_registration_sms(
        &self,
        ctx: &Context<'_>,
        input: ResendInput,
    ) -> Result<RegistrationTicket> {
        Ok(registration::resend_sms(ctx.data()?, caller(ctx)?, input.into()).await?)
    }

    /// Sends a new completion email; the previous link stops working.
    async fn resend_registration_email(
        &self,
        ctx: &Context<'_>,
        input: ResendInput,
    ) -> Result<RegistrationTicket> {
        Ok(registration::resend_email(ctx.data()?, caller(ctx)?, input.into()).await?)
    }
}
