//! The HTTP face: the legacy REST paths, the OAuth token endpoint, their
//! OpenAPI document, health and metrics, and the plumbing every HTTP route shares (the error shape,
//! JSON reading, authentication, idempotency, request spans).
mod auth;
pub mod error;
mod idempotency;
pub mod json;
mod oauth;
pub mod openapi;
mod receipts;
mod rest;
mod wire;

use axum::{
    Router,
    extract::{FromRef, State},
    http::{Method, Request, StatusCode, header},
    middleware,
    response::IntoResponse,
    routing::{get, post},
};

pub use self::auth::Unidentified;
use self::error::ApiError;
use crate::{
    metrics::RequestLabels,
    service::{client::ClientPresence, health},
    state::Core,
};

/// REST, OAuth, the OpenAPI document, health and metrics.
pub fn router<S>(core: &Core) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Core: FromRef<S>,
{
    let api = Router::new()
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
        );
    Router::new()
        .route("/oauth/token", post(oauth::token))
        .route("/oauth/revoke", post(oauth::revoke))
        // Signed by the provider, not by a host's token.
        .route("/delivery/receipts/{provider}", post(receipts::receive))
        .route("/openapi.json", get(openapi::serve))
        // The process answers: for a liveness probe. `/health` is the old name.
        .route("/healthz", get(|| async { "ok" }))
        .route("/health", get(|| async { "ok" }))
        .route("/readyz", get(readiness))
        .route("/metrics", get(metrics))
        .merge(authenticated(api, core))
}

/// Wraps API routes: a valid bearer token first, then `Idempotency-Key`,
/// which stores responses per authenticated host.
pub fn authenticated<S>(routes: Router<S>, core: &Core) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    // Layers run bottom-up.
    routes
        .layer(middleware::from_fn_with_state(
            core.clone(),
            idempotency::replay_or_record,
        ))
        .layer(middleware::from_fn_with_state(
            core.clone(),
            auth::require_host,
        ))
}

/// Like [`authenticated`], but a request without a working token goes on
/// with [`Unidentified`] in its extensions instead of the host: GraphQL
/// lets schema reads through and answers the rest in its own shape.
/// `Idempotency-Key` applies to identified hosts only.
pub fn identified<S>(routes: Router<S>, core: &Core) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    // One layer (see `startup::router`); the host is identified first.
    routes.layer(
        tower::ServiceBuilder::new()
            .layer(middleware::from_fn_with_state(
                core.clone(),
                auth::identify_host,
            ))
            .layer(middleware::from_fn_with_state(
                core.clone(),
                idempotency::replay_or_record,
            )),
    )
}

/// Spans carry the route template only: paths can hold a link token
/// (`/complete/{token}`) and query strings phone numbers and emails.
/// The request id (from `X-Request-Id`, or generated) is on every line
/// logged while the request runs, and in the response.
pub fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("<unmatched>", axum::extract::MatchedPath::as_str);
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!("http", method = %request.method(), route, request_id)
}

pub const REQUEST_ID: &str = "x-request-id";

/// Where GraphQL is served (POST) and GraphiQL shown (GET).
pub const GRAPHQL_PATH: &str = "/graphql";

/// Runs the request's work (authentication, idempotency, the handler) on a
/// task of its own, so it reaches its end even when the client goes away;
/// the work learns that it has gone from the [`ClientPresence`] this puts in
/// the request, and what has written nothing yet may stop.
/// Dropped half-way, a transaction would keep its row locks until its
/// connection is used again; a storm of abandoned requests could then hold
/// every pooled connection waiting on those locks. Reads (GET, HEAD) hold
/// no locks and run in place, which spares a verify the spawn and a wake-up
/// across threads. So does a GraphQL request without `Idempotency-Key`
/// (which would write its record): until its document is parsed nothing
/// writes, and the endpoint runs mutations on a task of their own. A panic
/// in a handler becomes a 500 instead of a dropped connection either way.
pub async fn run_to_completion(
    mut request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    use futures::FutureExt;
    use tracing::Instrument;
    let failed = |failure: &dyn std::fmt::Display| {
        ApiError::from(anyhow::anyhow!("request task failed: {failure}")).into_response()
    };
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    // Only writes ask whether their client is still there; reads, the
    // commonest requests, are spared the token. The guard stays in this
    // future, which is dropped with the request when the client goes; the
    // spawned work is not.
    let _gone_when_dropped = (!reads).then(|| {
        let (client, guard) = ClientPresence::watched();
        request.extensions_mut().insert(client);
        guard
    });
    let reads_until_its_handler_decides = match *request.method() {
        _ if reads => true,
        Method::POST => {
            request.uri().path() == GRAPHQL_PATH
                && !request.headers().contains_key(idempotency::HEADER)
        }
        _ => false,
    };
    if reads_until_its_handler_decides {
        return match std::panic::AssertUnwindSafe(next.run(request))
            .catch_unwind()
            .await
        {
            Ok(response) => response,
            Err(_) => failed(&"the handler panicked"),
        };
    }
    let work = tokio::spawn(next.run(request).instrument(tracing::Span::current()));
    match work.await {
        Ok(response) => response,
        Err(failure) => failed(&failure),
    }
}

/// Counts every request and its latency by operation (the route template),
/// transport and status.
pub async fn record_request(
    State(core): State<Core>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let operation = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("<unmatched>", axum::extract::MatchedPath::as_str)
        .to_owned();
    let transport = match (request.method().as_str(), operation.as_str()) {
        (_, path) if path.starts_with("/b2b/") => "rest",
        ("POST", GRAPHQL_PATH) => "graphql",
        (_, path) if path.starts_with("/complete") || path.starts_with("/static") => "page",
        ("GET", GRAPHQL_PATH) => "page",
        _ => "other",
    };
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    core.metrics.request(
        RequestLabels {
            operation,
            transport,
            status: response.status().as_u16(),
        },
        started.elapsed().as_secs_f64(),
    );
    response
}

/// 200 when this instance can serve, else 503; the body says which check
/// failed. No token needed, and cheap enough for a load balancer's probe.
async fn readiness(State(core): State<Core>) -> impl IntoResponse {
    let ready = health::readiness(&core).await;
    let status = if ready.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "ready": ready.is_ready(),
        "database": ready.database,
        "cluster": ready.cluster,
        "migrations": ready.migrations,
        "dispatcher": ready.dispatcher,
    });
    (status, axum::Json(body))
}

/// Prometheus text format. Counts and durations only, no labels carrying
/// customer data.
async fn metrics(State(core): State<Core>) -> Result<impl IntoResponse, ApiError> {
    let snapshot = health::snapshot(&core).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        core.metrics.render(&snapshot),
    ))
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
                let request = http::Request::get("/complete/SECRET-LINK-TOKEN")
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
