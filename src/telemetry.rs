use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt};

/// What is logged without `RUST_LOG`.
const DEFAULT_FILTER: &str = "info,sqlx=warn,sea_orm=warn,tower_http=warn";

/// The phone library traces the numbers it reads, unmasked (through `log`,
/// which the subscriber forwards); whatever `RUST_LOG` asks, it says no
/// more than its warnings (docs/LOGGING.md: PII is masked).
const PHONE_LIBRARY_CAP: &str = "rlibphonenumber=warn";

/// Logs to stderr; `RUST_LOG` filters, `CR_LOG_FORMAT=json` gives JSON lines.
pub fn init() {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref());
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

/// `RUST_LOG`'s filter (the default when it is unset or malformed), with
/// the phone library capped.
fn filter(rust_log: Option<&str>) -> EnvFilter {
    let filter = rust_log
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    match PHONE_LIBRARY_CAP.parse() {
        Ok(cap) => filter.add_directive(cap),
        Err(_) => filter,
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io,
        sync::{Arc, Mutex, PoisonError},
    };

    use super::*;
    use crate::domain::PhoneNumber;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            kept.extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// What a subscriber with `filter` writes while numbers are read.
    fn logged_while_reading_numbers(filter: EnvFilter) -> String {
        let _ = tracing_log::LogTracer::init();
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = fmt()
            .with_env_filter(filter)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for input in ["0812-3456-7890", "+62 812 3456 7890", "(021) 5150 1234"] {
                let _ = PhoneNumber::parse(input, "ID");
            }
        });
        let bytes = captured.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn the_phone_library_never_logs_the_numbers_it_reads() {
        // Uncapped, its traces hold the numbers: what the cap is for.
        let uncapped = logged_while_reading_numbers(EnvFilter::new("trace"));
        assert!(uncapped.contains("8123456789"), "{uncapped}");
        for rust_log in [Some("trace"), Some("rlibphonenumber=trace"), None] {
            let logged = logged_while_reading_numbers(filter(rust_log));
            assert!(!logged.contains("8123456789"), "{rust_log:?}: {logged}");
            assert!(!logged.contains("51501234"), "{rust_log:?}: {logged}");
        }
    }
}
