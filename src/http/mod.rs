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
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}

/// Spans carry the route template only: paths can hold a link token
/// (`/complete/{token}`) and query strings phone numbers and emails.
fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("<unmatched>", axum::extract::MatchedPath::as_str);
    tracing::info_span!("http", method = %request.method(), route)
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    /// Collects everything logged, to check what never may appear there.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn request_spans_name_the_route_not_the_link_token() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || writer.clone())
                .with_ansi(false),
        );
        tracing::subscriber::with_default(subscriber, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                use tower::ServiceExt;
                let app = axum::Router::new()
                    .route(
                        "/complete/{token}",
                        axum::routing::get(|| async {
                            tracing::info!("inside");
                        }),
                    )
                    .layer(
                        tower_http::trace::TraceLayer::new_for_http()
                            .make_span_with(super::request_span),
                    );
                let request = axum::http::Request::get("/complete/SECRET-LINK-TOKEN")
                    .body(axum::body::Body::empty())
                    .unwrap();
                app.oneshot(request).await.unwrap();
            });
        });
        let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(logged.contains(r#"route="/complete/{token}""#), "{logged}");
        assert!(!logged.contains("SECRET-LINK-TOKEN"), "{logged}");
    }
}
