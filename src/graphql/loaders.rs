//! Batch loaders: a page of registrations costs one query per related
//! table, not one per registration.
use std::{collections::HashMap, sync::OnceLock};

use async_graphql::dataloader::{DataLoader, Loader};
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

/// The DataLoaders of one request, each made when a resolver first asks
/// for it: most operations (verify, register, confirm) use none, and
/// making all five for every request was ten allocations and their drops.
/// Fresh per request, so nothing is cached across requests.
pub struct RequestLoaders {
    core: Core,
    current_code: OnceLock<DataLoader<CurrentCodeLoader>>,
    account_group: OnceLock<DataLoader<AccountGroupLoader>>,
    customer: OnceLock<DataLoader<CustomerLoader>>,
    deliveries: OnceLock<DataLoader<DeliveriesLoader>>,
    timeline: OnceLock<DataLoader<TimelineLoader>>,
}

impl RequestLoaders {
    pub fn new(core: Core) -> Self {
        Self {
            core,
            current_code: OnceLock::new(),
            account_group: OnceLock::new(),
            customer: OnceLock::new(),
            deliveries: OnceLock::new(),
            timeline: OnceLock::new(),
        }
    }

    pub fn current_code(&self) -> &DataLoader<CurrentCodeLoader> {
        made(&self.current_code, || CurrentCodeLoader(self.core.clone()))
    }

    pub fn account_group(&self) -> &DataLoader<AccountGroupLoader> {
        made(&self.account_group, || {
            AccountGroupLoader(self.core.clone())
        })
    }

    pub fn customer(&self) -> &DataLoader<CustomerLoader> {
        made(&self.customer, || CustomerLoader(self.core.clone()))
    }

    pub fn deliveries(&self) -> &DataLoader<DeliveriesLoader> {
        made(&self.deliveries, || DeliveriesLoader(self.core.clone()))
    }

    pub fn timeline(&self) -> &DataLoader<TimelineLoader> {
        made(&self.timeline, || TimelineLoader(self.core.clone()))
    }
}

fn made<L: Send + Sync + 'static>(
    cell: &OnceLock<DataLoader<L>>,
    loader: impl FnOnce() -> L,
) -> &DataLoader<L> {
    cell.get_or_init(|| DataLoader::new(loader(), tokio::spawn))
}

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
        Ok(outbox::timeline_rows(&self.0, keys).await?)
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
