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
    delivery::{Dispatcher, EmailTransport, SmsTransport},
    graphql, http,
    state::Core,
};

pub struct Application {
    pub core: Core,
    listener: TcpListener,
}

impl Application {
    pub async fn build(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let core = build_core(settings, clock).await?;
        let listener = TcpListener::bind(core.settings.listen)
            .await
            .with_context(|| format!("Failed to listen on {}", core.settings.listen))?;
        Ok(Self { core, listener })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listener
            .local_addr()
            .context("Failed to read listen address")
    }

    /// Serves HTTP and drains the outbox until the process stops. Both run
    /// in this one future, so dropping it stops both and frees the pool.
    pub async fn run(self) -> anyhow::Result<()> {
        let dispatcher = dispatcher(&self.core)?;
        let schema = graphql::build_schema(Some(self.core.clone()), &self.core.settings.graphql);
        let app = http::router(self.core.clone(), schema);
        let server = axum::serve(self.listener, app).with_graceful_shutdown(shutdown_signal());
        tokio::select! {
            served = server => served.context("HTTP server failed"),
            () = dispatcher.run() => Ok(()),
        }
    }
}

/// The core without the HTTP server: what CLI subcommands need.
pub async fn build_core(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Core> {
    settings.validate()?;
    let statements = Arc::new(AtomicU64::new(0));
    let db = db::connect_and_migrate(&settings.database_url(), statements.clone()).await?;
    let keys = Arc::new(Keys::load_or_generate(&settings)?);
    Ok(Core::new(db, Arc::new(settings), clock, keys, statements))
}

pub fn dispatcher(core: &Core) -> anyhow::Result<Dispatcher> {
    let outbox = core.settings.outbox_dir();
    let from = "Registration <no-reply@registration.local>"
        .parse()
        .context("Failed to parse sender address")?;
    Ok(Dispatcher::new(
        core.clone(),
        EmailTransport::file(outbox.clone())?,
        SmsTransport::json_lines(outbox)?,
        from,
    ))
}

async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
