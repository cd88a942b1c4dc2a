//! Batch loaders: a page of registrations costs one query per related
//! table, not one per registration.
use std::collections::HashMap;

use async_graphql::dataloader::Loader;
use entity::{account_group, customer, delivery_attempt, outbox_message, sms_token};
use uuid::Uuid;

use crate::{
    service::{outbox, registration},
    state::Core,
};

pub struct CurrentTokenLoader(pub Core);
pub struct AccountGroupLoader(pub Core);
pub struct CustomerLoader(pub Core);
pub struct DeliveriesLoader(pub Core);
pub struct DeliveryAttemptsLoader(pub Core);

impl Loader<Uuid> for DeliveriesLoader {
    type Value = Vec<outbox_message::Model>;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        Ok(outbox::messages_by_registration(&self.0, keys).await?)
    }
}

impl Loader<Uuid> for DeliveryAttemptsLoader {
    type Value = Vec<delivery_attempt::Model>;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        Ok(outbox::attempts_by_message(&self.0, keys).await?)
    }
}

impl Loader<Uuid> for CurrentTokenLoader {
    type Value = sms_token::Model;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        Ok(registration::current_tokens(&self.0, keys).await?)
    }
}

impl Loader<String> for AccountGroupLoader {
    type Value = account_group::Model;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Self::Value>, Self::Error> {
        Ok(registration::account_groups(&self.0, keys).await?)
    }
}

impl Loader<Uuid> for CustomerLoader {
    type Value = customer::Model;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        Ok(registration::customers_by_registration(&self.0, keys).await?)
    }
}
