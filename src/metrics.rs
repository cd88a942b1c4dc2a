//! Metrics for operators, served at `GET /metrics` in the Prometheus text
//! format by prometheus-client. Each instance owns its registry (no global
//! recorder), so several applications in one process, as in the tests, keep
//! their own figures. Labels never carry customer data.
use std::sync::Mutex;

use entity::states::{AttemptOutcome, Channel};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::domain::CodeCheck;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route template (`/b2b/customer/register`, `/graphql`, ...).
    pub operation: String,
    /// `rest`, `graphql`, `page` or `other`.
    pub transport: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub operation: String,
    pub transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    channel: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuotaLabels {
    channel: &'static str,
    scope: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriterLabels {
    by: &'static str,
}

/// Who took a turn at SQLite's one writer (`service::write`).
#[derive(Clone, Copy, Debug)]
pub enum WriterUse {
    /// A request's write, or the retention sweep's, queued behind requests.
    Request,
    /// The delivery loop's claims and recorded results.
    Delivery,
    /// The end of a log copy (`service::checkpoints`).
    Checkpoint,
}

impl WriterUse {
    fn name(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Delivery => "delivery",
            Self::Checkpoint => "checkpoint",
        }
    }
}

/// Operations that stop unwritten when their client has gone.
#[derive(Clone, Copy, Debug)]
pub enum AbandonedOperation {
    Register,
    Confirm,
}

impl AbandonedOperation {
    fn name(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::Confirm => "confirm",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AbandonedLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// An SMS provider and the country of the number (`unknown` when the number
/// has none): never the number itself.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SmsLabels {
    provider: String,
    country: String,
    /// A send's `sent`/`failed`/`dead`, or a receipt's status.
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderCountryLabels {
    provider: String,
    country: String,
}

type Latency = Family<LatencyLabels, Histogram, fn() -> Histogram>;
type ReceiptLatency = Family<ProviderCountryLabels, Histogram, fn() -> Histogram>;

fn receipt_histogram() -> Histogram {
    // 1 s to about 9 hours.
    Histogram::new(exponential_buckets(1.0, 2.0, 16))
}

/// What is read at scrape time rather than counted as it happens.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Per channel: messages waiting, and the age of the oldest in seconds.
    pub outbox: Vec<(Channel, i64, f64)>,
    pub hashes_waiting: i64,
    pub hashes_running: i64,
    /// Bytes of Argon2 memory the hashing threads hold now.
    pub hash_memory_bytes: i64,
    pub pool_connections: i64,
    pub pool_idle: i64,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Latency,
    deliveries: Family<DeliveryLabels, Counter>,
    sms_sends: Family<SmsLabels, Counter>,
    sms_receipts: Family<SmsLabels, Counter>,
    sms_receipt_latency: ReceiptLatency,
    refused_by_quota: Family<QuotaLabels, Counter>,
    code_checks: Family<OutcomeLabels, Counter>,
    db_statements: Counter,
    transaction_retries: Counter,
    requests_abandoned: Family<AbandonedLabels, Counter>,
    register_batch_size: Histogram,
    writer_turns: Family<WriterLabels, Counter>,
    writer_held: Family<WriterLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    outbox_depth: Family<ChannelLabels, Gauge>,
    outbox_oldest: Family<ChannelLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    hashes_waiting: Gauge,
    hashes_running: Gauge,
    hash_memory_bytes: Gauge,
    pool_connections: Gauge,
    pool_idle: Gauge,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut metrics = Self {
            registry: Mutex::new(Registry::with_prefix("registration")),
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            deliveries: Family::default(),
            sms_sends: Family::default(),
            sms_receipts: Family::default(),
            sms_receipt_latency: Family::new_with_constructor(receipt_histogram),
            refused_by_quota: Family::default(),
            code_checks: Family::default(),
            db_statements: Counter::default(),
            transaction_retries: Counter::default(),
            requests_abandoned: Family::default(),
            register_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 7)),
            writer_turns: Family::default(),
            writer_held: Family::default(),
            outbox_depth: Family::default(),
            outbox_oldest: Family::default(),
            hashes_waiting: Gauge::default(),
            hashes_running: Gauge::default(),
            hash_memory_bytes: Gauge::default(),
            pool_connections: Gauge::default(),
            pool_idle: Gauge::default(),
        };
        let registry = metrics
            .registry
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        registry.register(
            "http_requests",
            "HTTP requests by operation, transport and status.",
            metrics.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by operation and transport.",
            metrics.latency.clone(),
        );
        registry.register(
            "deliveries",
            "Send attempts by channel and outcome (sent, failed, dead).",
            metrics.deliveries.clone(),
        );
        registry.register(
            "sends_refused_by_quota",
            "Sends refused by a send quota, by channel and scope.",
            metrics.refused_by_quota.clone(),
        );
        registry.register(
            "code_checks",
            "Submitted SMS codes by outcome (current, superseded, expired, wrong).",
            metrics.code_checks.clone(),
        );
        registry.register(
            "db_statements",
            "Database statements executed.",
            metrics.db_statements.clone(),
        );
        registry.register(
            "db_transaction_retries",
            "Transactions run whole again after losing a race (deadlock, serialization failure, SQLite busy, Galera certification).",
            metrics.transaction_retries.clone(),
        );
        registry.register(
            "requests_abandoned",
            "Requests that stopped unwritten because their client had gone, by operation: a confirm waiting for a hashing slot, a register waiting for its batch.",
            metrics.requests_abandoned.clone(),
        );
        registry.register(
            "sms_sends",
            "SMS send attempts by provider, destination country and outcome (sent, failed, dead).",
            metrics.sms_sends.clone(),
        );
        registry.register(
            "sms_receipts",
            "SMS delivery receipts applied, by provider, destination country and status (delivered, undelivered, provider_failed); delivered over sent is the delivery rate.",
            metrics.sms_receipts.clone(),
        );
        registry.register(
            "sms_receipt_latency_seconds",
            "From the provider accepting an SMS to its final receipt, by provider and country.",
            metrics.sms_receipt_latency.clone(),
        );
        registry.register(
            "outbox_depth",
            "Messages waiting to be sent, by channel.",
            metrics.outbox_depth.clone(),
        );
        registry.register(
            "outbox_oldest_age_seconds",
            "Age of the oldest waiting message, by channel.",
            metrics.outbox_oldest.clone(),
        );
        registry.register(
            "password_hashes_waiting",
            "Requests waiting for a password-hashing slot.",
            metrics.hashes_waiting.clone(),
        );
        registry.register(
            "password_hashes_running",
            "Password hashes being computed, including those whose request was abandoned.",
            metrics.hashes_running.clone(),
        );
        registry.register(
            "password_hash_memory_bytes",
            "Argon2 memory the password-hashing threads hold; given back after an idle second.",
            metrics.hash_memory_bytes.clone(),
        );
        registry.register(
            "db_pool_connections",
            "Open database connections.",
            metrics.pool_connections.clone(),
        );
        registry.register(
            "register_batch_size",
            "Registers written in one transaction (group commit).",
            metrics.register_batch_size.clone(),
        );
        registry.register(
            "sqlite_writer_turns",
            "Turns taken at SQLite's one writer, by who took them (request, delivery, checkpoint); none on other databases.",
            metrics.writer_turns.clone(),
        );
        registry.register(
            "sqlite_writer_held_seconds",
            "Time SQLite's one writer was held, by who held it; its rate near 1 means writes queue for it.",
            metrics.writer_held.clone(),
        );
        registry.register(
            "db_pool_idle_connections",
            "Idle database connections.",
            metrics.pool_idle.clone(),
        );
        metrics
    }
}

impl Metrics {
    pub fn request(&self, labels: RequestLabels, seconds: f64) {
        self.latency
            .get_or_create(&LatencyLabels {
                operation: labels.operation.clone(),
                transport: labels.transport,
            })
            .observe(seconds);
        self.requests.get_or_create(&labels).inc();
    }

    pub fn delivery(&self, channel: Channel, outcome: AttemptOutcome) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                channel: channel.name(),
                outcome: outcome.name(),
            })
            .inc();
    }

    pub fn sms_send(&self, provider: &str, country: Option<&str>, outcome: AttemptOutcome) {
        self.sms_sends
            .get_or_create(&SmsLabels {
                provider: provider.to_owned(),
                country: country.unwrap_or("unknown").to_owned(),
                status: outcome.name(),
            })
            .inc();
    }

    /// A receipt that changed a message; `latency` from when it was sent.
    pub fn sms_receipt(
        &self,
        provider: &str,
        country: Option<&str>,
        outcome: AttemptOutcome,
        latency_seconds: Option<f64>,
    ) {
        let country = country.unwrap_or("unknown").to_owned();
        self.sms_receipts
            .get_or_create(&SmsLabels {
                provider: provider.to_owned(),
                country: country.clone(),
                status: outcome.name(),
            })
            .inc();
        if let Some(seconds) = latency_seconds {
            self.sms_receipt_latency
                .get_or_create(&ProviderCountryLabels {
                    provider: provider.to_owned(),
                    country,
                })
                .observe(seconds);
        }
    }

    pub fn refused_by_quota(&self, channel: Channel, scope: &'static str) {
        self.refused_by_quota
            .get_or_create(&QuotaLabels {
                channel: channel.name(),
                scope,
            })
            .inc();
    }

    /// One transaction wrote `registers` registers together.
    pub fn registers_written_together(&self, registers: usize) {
        self.register_batch_size.observe(registers as f64);
    }

    /// A turn at SQLite's one writer, held for `held`.
    pub fn writer_turn(&self, by: WriterUse, held: std::time::Duration) {
        let labels = WriterLabels { by: by.name() };
        self.writer_turns.get_or_create(&labels).inc();
        self.writer_held
            .get_or_create(&labels)
            .inc_by(held.as_secs_f64());
    }

    /// Turns taken at SQLite's one writer by `by` since start.
    pub fn writer_turns(&self, by: WriterUse) -> u64 {
        self.writer_turns
            .get_or_create(&WriterLabels { by: by.name() })
            .get()
    }

    pub fn transaction_retried(&self) {
        self.transaction_retries.inc();
    }

    pub fn request_abandoned(&self, operation: AbandonedOperation) {
        self.requests_abandoned
            .get_or_create(&AbandonedLabels {
                operation: operation.name(),
            })
            .inc();
    }

    /// Requests of `operation` given up since start, their client gone.
    pub fn requests_abandoned(&self, operation: AbandonedOperation) -> u64 {
        self.requests_abandoned
            .get_or_create(&AbandonedLabels {
                operation: operation.name(),
            })
            .get()
    }

    pub fn code_check(&self, check: CodeCheck) {
        let outcome = match check {
            CodeCheck::Current => "current",
            CodeCheck::Superseded => "superseded",
            CodeCheck::Expired => "expired",
            CodeCheck::Wrong => "wrong",
        };
        self.code_checks
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn db_statement(&self) {
        self.db_statements.inc();
    }

    /// Statements executed since start (the DataLoader tests count them).
    pub fn db_statements(&self) -> u64 {
        self.db_statements.get()
    }

    /// The text exposition, with the scrape-time figures set first.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        for (channel, depth, oldest) in &snapshot.outbox {
            let labels = ChannelLabels {
                channel: channel.name(),
            };
            self.outbox_depth.get_or_create(&labels).set(*depth);
            self.outbox_oldest.get_or_create(&labels).set(*oldest);
        }
        self.hashes_waiting.set(snapshot.hashes_waiting);
        self.hashes_running.set(snapshot.hashes_running);
        self.hash_memory_bytes.set(snapshot.hash_memory_bytes);
        self.pool_connections.set(snapshot.pool_connections);
        self.pool_idle.set(snapshot.pool_idle);
        let mut text = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(error) = encode(&mut text, &registry) {
            tracing::error!(error = %error, "metrics encoding failed");
        }
        text
    }
}
