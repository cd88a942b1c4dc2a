//! The GraphQL face. Resolvers translate to core calls; the core's views
//! are the output types, database rows never are.
mod loaders;
mod mutation;
mod policy;
mod query;
mod types;

use async_graphql::{EmptySubscription, Schema, dataloader::DataLoader};

pub use policy::check_operation_policy;

use crate::{config::GraphqlSettings, state::Core};

pub type AppSchema = Schema<query::QueryRoot, mutation::MutationRoot, EmptySubscription>;

pub fn build_schema(core: Option<Core>, settings: &GraphqlSettings) -> AppSchema {
    let mut builder = Schema::build(query::QueryRoot, mutation::MutationRoot, EmptySubscription)
        .limit_depth(settings.max_depth)
        .limit_complexity(settings.max_complexity);
    if !settings.introspection {
        builder = builder.disable_introspection();
    }
    if let Some(core) = core {
        builder = builder.data(core);
    }
    builder.finish()
}

/// Fresh loaders for one request, so nothing is cached across requests.
pub fn request_loaders(core: &Core, request: async_graphql::Request) -> async_graphql::Request {
    fn batched<L: Send + Sync + 'static>(loader: L) -> DataLoader<L> {
        DataLoader::new(loader, tokio::spawn)
    }
    request
        .data(batched(loaders::CurrentTokenLoader(core.clone())))
        .data(batched(loaders::AccountGroupLoader(core.clone())))
        .data(batched(loaders::CustomerLoader(core.clone())))
        .data(batched(loaders::DeliveriesLoader(core.clone())))
        .data(batched(loaders::DeliveryAttemptsLoader(core.clone())))
}

/// The SDL checked into the repository as `schema.graphql`.
pub fn sdl() -> String {
    build_schema(None, &GraphqlSettings::default()).sdl()
}
