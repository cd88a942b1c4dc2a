//! The GraphQL face. Resolvers translate to core calls and wrap what the
//! core returns in GraphQL types; database rows never reach them.
mod delivery;
mod direct;
mod documents;
mod endpoint;
pub mod error;
mod input_shapes;
mod inputs;
mod loaders;
mod mutation;
mod outputs;
mod policy;
mod query;
mod registration;
mod spend;
mod webhooks;

use async_graphql::{EmptySubscription, Schema};
use axum::{Router, extract::FromRef, routing::post};

use crate::{config::GraphqlSettings, http, state::Core};

pub use documents::ParsedDocuments;

pub type AppSchema = Schema<query::QueryRoot, mutation::MutationRoot, EmptySubscription>;

pub fn build_schema(core: Option<Core>, settings: &GraphqlSettings) -> AppSchema {
    // The policy bounds the depth of data fields (`policy.rs`); the engine's
    // own limit is only a backstop, high enough for the schema reads of
    // graphql-js with every option on.
    let mut builder = Schema::build(query::QueryRoot, mutation::MutationRoot, EmptySubscription)
        .limit_depth(settings.max_depth.max(policy::SCHEMA_READ_DEPTH))
        .limit_complexity(settings.max_complexity)
        .extension(documents::ReuseValidation::default());
    if !settings.introspection {
        builder = builder.disable_introspection();
    }
    if let Some(core) = core {
        builder = builder.data(core);
    }
    builder.finish()
}

/// `POST /graphql`, behind the same authentication and idempotency as REST,
/// except that the endpoint itself answers a missing token (schema reads
/// need none).
pub fn router<S>(core: &Core) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Core: FromRef<S>,
    AppSchema: FromRef<S>,
    ParsedDocuments: FromRef<S>,
{
    http::identified(
        Router::new().route(http::GRAPHQL_PATH, post(endpoint::execute)),
        core,
    )
}

/// The SDL checked into the repository as `schema.graphql`.
pub fn sdl() -> String {
    build_schema(None, &GraphqlSettings::default()).sdl()
}
