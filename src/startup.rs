//! Builds the whole service from settings; `main` and the tests both use it.
use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicU64},
};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::{
    clock::Clock,
    config::Settings,
    crypto::Keys,
    db,
    delivery::{Dispatcher, EmailSender, SmsTransport, templates::Templates},
    graphql, http,
    state::Core,
};

pub struct Application {
    pub core: Core,
    listener: TcpListener,
    dispatcher: Dispatcher,
}

impl Application {
    pub async fn build(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let core = build_core(settings, clock).await?;
        // Built here so a transport misconfiguration stops the start.
        let dispatcher = dispatcher(&core)?;
        let listener = TcpListener::bind(core.settings.listen)
            .await
            .with_context(|| format!("Failed to listen on {}", core.settings.listen))?;
        Ok(Self {
            core,
            listener,
            dispatcher,
        })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listener
            .local_addr()
            .context("Failed to read listen address")
    }

    /// Serves HTTP and drains the outbox until the process stops. Both run
    /// in this one future, so dropping it stops both and frees the pool.
    pub async fn run(self) -> anyhow::Result<()> {
        let schema = graphql::build_schema(Some(self.core.clone()), &self.core.settings.graphql);
        let app = http::router(self.core.clone(), schema);
        let server = axum::serve(self.listener, app).with_graceful_shutdown(shutdown_signal());
        tokio::select! {
            served = server => served.context("HTTP server failed"),
            () = self.dispatcher.run() => Ok(()),
        }
    }
}

/// The core without the HTTP server: what CLI subcommands need.
pub async fn build_core(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Core> {
    settings.validate()?;
    let statements = Arc::new(AtomicU64::new(0));
    let db = db::connect_and_migrate(&settings.database_url(), statements.clone()).await?;
    let keys = Arc::new(Keys::load_or_generate(&settings)?);
    let overrides =
        Some(settings.delivery.templates_dir.as_path()).filter(|p| !p.as_os_str().is_empty());
    let templates = Arc::new(Templates::load(overrides)?);
    Ok(Core::new(
        db,
        Arc::new(settings),
        clock,
        keys,
        statements,
        templates,
    ))
}

pub fn dispatcher(core: &Core) -> anyhow::Result<Dispatcher> {
    let outbox = core.settings.outbox_dir();
    let delivery = &core.settings.delivery;
    Ok(Dispatcher::new(
        core.clone(),
        EmailSender::from_settings(delivery, outbox.clone())?,
        SmsTransport::from_settings(delivery, outbox)?,
    ))
}

async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
