//! The HTTP face: legacy REST paths, GraphQL, OAuth token endpoint.
mod auth;
mod graphql;
mod idempotency;
mod json;
mod oauth;
mod rest;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    middleware,
    routing::{get, post},
};
use tower_http::trace::TraceLayer;

use crate::{error::AppError, graphql::AppSchema, pages, state::Core};

#[derive(Clone)]
pub struct HttpState {
    pub core: Core,
    pub schema: AppSchema,
}

pub fn router(core: Core, schema: AppSchema) -> Router {
    let state = HttpState {
        core: core.clone(),
        schema,
    };
    let authenticated = Router::new()
        .route("/b2b/customer/register", post(rest::register))
        .route("/b2b/customer/register/confirm", post(rest::confirm))
        .route(
            "/b2b/customer/auth/verifyUsername",
            get(rest::verify_username),
        )
        .route("/b2b/customer/auth/verifyEmail", get(rest::verify_email))
        .route(
            "/b2b/customer/resend/registration/sms",
            post(rest::resend_sms),
        )
        .route(
            "/b2b/customer/resend/registration/email",
            post(rest::resend_email),
        )
        .route("/graphql", post(graphql::execute))
        // Layers run bottom-up: authentication first, then idempotency,
        // which stores responses per authenticated host.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::replay_or_record,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_host,
        ));
    Router::new()
        .route("/graphql", get(pages::graphiql_page))
        .route("/static/graphiql/{file}", get(pages::graphiql_asset))
        .route("/oauth/token", post(oauth::token))
        .merge(pages::routes())
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .merge(authenticated)
        .fallback(|| async { AppError::RouteNotFound })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(core.settings.limits.max_body_bytes))
        // Spans carry the path only: query strings hold phone numbers and emails.
        .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
            tracing::info_span!("http", method = %request.method(), path = %request.uri().path())
        }))
        .with_state(state)
}

/// Prometheus text format. Counts only, no labels carrying customer data.
async fn metrics(
    axum::extract::State(state): axum::extract::State<HttpState>,
) -> impl axum::response::IntoResponse {
    let statements = state
        .core
        .db_statements
        .load(std::sync::atomic::Ordering::Relaxed);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.core.metrics.render(statements),
    )
}
