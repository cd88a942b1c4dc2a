//! Builds the whole service from settings; `main` and the tests both use
//! it. This is the one place that knows every face: it merges their routes
//! over one shared state.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use axum::http::HeaderName;
use axum::{Router, extract::DefaultBodyLimit, extract::FromRef};
use tokio::{net::TcpListener, sync::watch};
use tower::ServiceBuilder;
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

use crate::{
    clock::Clock,
    config::Settings,
    crypto::Keys,
    db,
    delivery::{Dispatcher, EmailSender, MemoryOutbox, SmsProviders, WebhookTransport},
    graphql::{self, AppSchema, ParsedDocuments},
    http::{self, error::ApiError},
    metrics::Metrics,
    pages, service,
    state::Core,
    templates::Templates,
};

/// What the handlers of every face take their state from, by `FromRef`.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub core: Core,
    pub schema: AppSchema,
    pub documents: ParsedDocuments,
}

pub struct Application {
    pub core: Core,
    /// What the memory transports sent, when configured.
    pub memory_outbox: MemoryOutbox,
    listener: TcpListener,
    dispatcher: Dispatcher,
}

impl Application {
    pub async fn build(mut settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("Failed to listen on {}", settings.listen))?;
        // Links in emails follow the port actually bound (`--listen :0` too).
        settings.listen = listener
            .local_addr()
            .context("Failed to read listen address")?;
        let core = build_core(settings, clock).await?;
        // Serving only: the CLI must still open the database to fix a host.
        service::hosts::check_autofill_fits(&core).await?;
        let memory_outbox = MemoryOutbox::default();
        // Built here so a transport misconfiguration stops the start.
        let dispatcher = dispatcher(&core, &memory_outbox)?;
        Ok(Self {
            core,
            memory_outbox,
            listener,
            dispatcher,
        })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listener
            .local_addr()
            .context("Failed to read listen address")
    }

    /// Serves HTTP and drains the outbox until SIGTERM or SIGINT. Then it
    /// stops accepting connections, lets in-flight requests and the send in
    /// progress finish for up to `limits.shutdown_grace_seconds`, and
    /// returns. Everything runs in this one future, so dropping it stops
    /// all of it and frees the pool.
    pub async fn run(self) -> anyhow::Result<()> {
        let grace = Duration::from_secs(self.core.settings.limits.shutdown_grace_seconds);
        let (stop, stopping) = watch::channel(false);
        let app = router(self.core.clone());
        let mut server_stopping = stopping.clone();
        let serve = async {
            let served = axum::serve(self.listener, app)
                .with_graceful_shutdown(async move {
                    let _ = server_stopping.wait_for(|stopping| *stopping).await;
                })
                .await
                .context("HTTP server failed");
            // Whatever ended the server ends delivery too.
            stop.send_replace(true);
            served
        };
        let work = async {
            let (served, (), (), ()) = tokio::join!(
                serve,
                self.dispatcher.run(stopping.clone()),
                service::checkpoints::until_stopped(self.core.clone(), stopping.clone()),
                service::request_limits::sync_until_stopped(self.core.clone(), stopping)
            );
            served
        };
        let signalled = async {
            shutdown_signal().await;
            tracing::info!(grace_seconds = grace.as_secs(), "shutting down");
            stop.send_replace(true);
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            done = work => done,
            () = signalled => {
                tracing::warn!("grace period over with work in flight; leases expire and other instances retry");
                Ok(())
            }
        }
    }
}

/// Every route of every face, with the layers they share.
pub fn router(core: Core) -> Router {
    let schema = graphql::build_schema(Some(core.clone()), &core.settings.graphql);
    let body_limit = core.settings.limits.max_body_bytes;
    // One `layer` call for the whole stack: the router boxes each route's
    // service once per call, and every request clones those boxes (each
    // `from_fn` clones what is beneath it too), so six calls cost about
    // forty allocations a request. Outermost first: the id is set before
    // the span that logs it.
    let middleware = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(
            HeaderName::from_static(http::REQUEST_ID),
            MakeRequestUuid,
        ))
        .layer(TraceLayer::new_for_http().make_span_with(http::request_span))
        .layer(PropagateRequestIdLayer::new(HeaderName::from_static(
            http::REQUEST_ID,
        )))
        .layer(axum::middleware::from_fn_with_state(
            core.clone(),
            http::record_request,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(http::run_to_completion));
    Router::new()
        .merge(http::router(&core))
        .merge(graphql::router(&core))
        .merge(pages::router())
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware)
        .with_state(AppState {
            core,
            documents: ParsedDocuments::for_schema(&schema.sdl()),
            schema,
        })
}

/// The core without the HTTP server: what CLI subcommands need.
pub async fn build_core(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Core> {
    settings.validate()?;
    for warning in settings.warnings() {
        tracing::warn!("{warning}");
    }
    // Before connecting: missing keys are a configuration error, not a
    // database one.
    let keys = Arc::new(Keys::load(&settings)?);
    let metrics = Arc::new(Metrics::default());
    let db = db::connect_and_migrate(
        &settings.database_url(),
        settings.galera_sync_wait,
        metrics.clone(),
    )
    .await?;
    let overrides =
        Some(settings.delivery.templates_dir.as_path()).filter(|p| !p.as_os_str().is_empty());
    let templates = Arc::new(Templates::load(overrides)?);
    let galera = db::is_galera(&db).await;
    db::warn_without_autovacuum(&db).await;
    let core = Core::new(
        db,
        Arc::new(settings),
        clock,
        keys,
        metrics,
        templates,
        galera,
    );
    service::keys::check_fingerprints(&core).await?;
    Ok(core)
}

pub fn dispatcher(core: &Core, memory: &MemoryOutbox) -> anyhow::Result<Dispatcher> {
    let outbox = core.settings.outbox_dir();
    let delivery = &core.settings.delivery;
    Ok(Dispatcher::new(
        core.clone(),
        EmailSender::from_settings(delivery, outbox.clone(), memory)?,
        SmsProviders::from_settings(
            &delivery.sms,
            &core.settings.public_base_url(),
            outbox,
            memory,
        )?,
    )
    .with_webhooks(WebhookTransport::from_settings(&core.settings.webhooks)?))
}

/// SIGINT (Ctrl-C) or, on Unix, SIGTERM (what orchestrators send).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::error!(error = %error, "cannot listen for SIGTERM; only Ctrl-C stops the service");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
