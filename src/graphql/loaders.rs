//! Batch loaders: a page of registrations costs one query per related
//! table, not one per registration.
use std::collections::HashMap;

use async_graphql::dataloader::Loader;
use uuid::Uuid;

use crate::{
    domain::IssuedCode,
    service::{
        account_groups::AccountGroup,
        outbox::{self, Delivery, DeliveryEvent},
        registration::{queries, views::CustomerSummary},
    },
    state::Core,
};

pub struct CurrentCodeLoader(pub Core);
pub struct AccountGroupLoader(pub Core);
pub struct CustomerLoader(pub Core);
pub struct DeliveriesLoader(pub Core);
pub struct TimelineLoader(pub Core);

impl Loader<Uuid> for DeliveriesLoader {
    type Value = Vec<Delivery>;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        Ok(outbox::deliveries_by_registration(&self.0, keys).await?)
    }
}

impl Loader<Uuid> for TimelineLoader {
    type Value = Vec<DeliveryEvent>;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        Ok(outbox::timelines(&self.0, keys).await?)
    }
}

impl Loader<Uuid> for CurrentCodeLoader {
    type Value = IssuedCode;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        Ok(queries::current_codes(&self.0, keys).await?)
    }
}

impl Loader<String> for AccountGroupLoader {
    type Value = AccountGroup;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Self::Value>, Self::Error> {
        Ok(queries::account_groups(&self.0, keys).await?)
    }
}

impl Loader<Uuid> for CustomerLoader {
    type Value = CustomerSummary;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        Ok(queries::customers_by_registration(&self.0, keys).await?)
    }
}
