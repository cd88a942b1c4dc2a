use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt};

/// Logs to stderr; `RUST_LOG` filters, `CR_LOG_FORMAT=json` gives JSON lines.
pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn,tower_http=warn"));
    // Colour only for a person at a terminal, never into a log collector.
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if std::env::var("CR_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
