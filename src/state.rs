//! What every operation needs, built once at start-up.
use crate::{known_groups::KnownAccountGroups, token_cache::TokenCache};
use std::sync::{
    Arc,
    atomic::{AtomicI64, AtomicU64},
};

use chrono::{DateTime, Utc};
use entity::states::Channel;
use sea_orm::{DatabaseConnection, DbBackend};
use tokio::sync::{Mutex, Notify};

use crate::{
    clock::Clock,
    config::Settings,
    counting_slots::CountingSlots,
    crypto::{Keys, PasswordHashing},
    db::Lookups,
    domain::Rules,
    group_commit::GroupCommit,
    metrics::Metrics,
    request_counts::RequestLimiter,
    templates::Templates,
};

/// A cheap handle on [`CoreParts`]: every extractor, middleware and task
/// clones it, so a clone copies one pointer instead of twenty (the copies
/// and drops of the whole struct were about 6 % of a verify's CPU time).
#[derive(Clone)]
pub struct Core(Arc<CoreParts>);

impl std::ops::Deref for Core {
    type Target = CoreParts;

    fn deref(&self) -> &CoreParts {
        &self.0
    }
}

#[derive(Clone)]
pub struct CoreParts {
    pub db: DatabaseConnection,
    /// Where verify's lookup runs: on SQLite connections of their own,
    /// returned without sqlx's ping (`db::lookups`); elsewhere `db`.
    pub lookups: Lookups,
    pub settings: Arc<Settings>,
    /// The registration lifecycle's thresholds, from `settings`.
    pub rules: Rules,
    pub clock: Arc<dyn Clock>,
    pub keys: Arc<Keys>,
    pub hashing: PasswordHashing,
    /// Wakes the delivery dispatcher when a transaction queued messages.
    pub outbox_signal: Arc<Notify>,
    pub templates: Arc<Templates>,
    pub metrics: Arc<Metrics>,
    /// When the delivery loop last went round (Unix milliseconds; 0: never).
    pub dispatcher_beat: Arc<AtomicI64>,
    /// Access tokens recently found valid.
    pub tokens: Arc<TokenCache>,
    /// Account groups found in the database (`service::account_groups`).
    pub account_groups: Arc<KnownAccountGroups>,
    /// This instance's request counts per host, synced with the database.
    pub request_limits: Arc<RequestLimiter>,
    /// On SQLite, whose one writer at a time is enforced by a file lock that
    /// waiting connections poll (sleeping up to 100 ms between tries), this
    /// process's writes queue here instead and take their turn the moment
    /// the previous one ends (`service::write`). None elsewhere.
    pub sqlite_writer: Option<Arc<WriterQueue>>,
    /// Whether the database is a node of a Galera cluster, where every
    /// commit first checks that its transaction is still open
    /// (`db::commit`).
    pub galera: bool,
    /// Registers waiting to be written together, one transaction per batch
    /// (`service::registration::batch`).
    pub register_batches: Arc<GroupCommit>,
    /// Which row of a shared quota counter each write transaction counts
    /// in (`service::quotas::allowances`).
    pub counting_slots: Arc<CountingSlots>,
    /// The last large count of waiting messages (`service::health`).
    pub waiting_count: Arc<WaitingCount>,
}

impl Core {
    /// The core of another instance on the same database: the same settings
    /// and keys, its own in-memory request counts and token cache (for
    /// tests of what instances share only through the database).
    pub fn another_instance(&self) -> Core {
        let mut parts = (*self.0).clone();
        parts.request_limits = Arc::default();
        parts.tokens = Arc::new(TokenCache::new(self.settings.auth.token_cache_seconds));
        parts.account_groups = Arc::default();
        parts.register_batches = register_batches(self.db.get_database_backend());
        parts.counting_slots = counting_slots(self.db.get_database_backend());
        parts.waiting_count = Arc::default();
        Core(Arc::new(parts))
    }

    pub fn new(
        db: DatabaseConnection,
        settings: Arc<Settings>,
        clock: Arc<dyn Clock>,
        keys: Arc<Keys>,
        metrics: Arc<Metrics>,
        templates: Arc<Templates>,
        galera: bool,
    ) -> Self {
        let hashing = PasswordHashing::new(
            keys.clone(),
            settings.limits.max_concurrent_hashes,
            settings.limits.max_queued_hashes,
        );
        let settings_cache_seconds = settings.auth.token_cache_seconds;
        let sqlite_writer = (db.get_database_backend() == DbBackend::Sqlite)
            .then(|| Arc::new(WriterQueue::on(&db, metrics.clone())));
        Self(Arc::new(CoreParts {
            rules: Rules::new(&settings.registration),
            settings,
            clock,
            keys,
            hashing,
            outbox_signal: Arc::new(Notify::new()),
            templates,
            lookups: Lookups::new(&db, metrics.clone()),
            metrics,
            dispatcher_beat: Arc::new(AtomicI64::new(0)),
            tokens: Arc::new(TokenCache::new(settings_cache_seconds)),
            account_groups: Arc::default(),
            request_limits: Arc::new(RequestLimiter::default()),
            sqlite_writer,
            galera,
            register_batches: register_batches(db.get_database_backend()),
            counting_slots: counting_slots(db.get_database_backend()),
            waiting_count: Arc::default(),
            db,
        }))
    }
}

/// Per channel: messages waiting and when the oldest was queued.
pub type Waiting = Vec<(Channel, i64, Option<DateTime<Utc>>)>;

/// The last large count of waiting messages and when it was taken
/// (`service::health::waiting_messages` says why it is kept).
#[derive(Default)]
pub struct WaitingCount(pub(crate) Mutex<Option<(DateTime<Utc>, Waiting)>>);

/// The queue of registers waiting to be written together, and how many of
/// its batches one process writes at once. SQLite has one
/// writer. PostgreSQL runs transactions side by side: with one batch at a
/// time, registers waited for the previous batch's round trips and commit
/// while the database had cores to spare. PostgreSQL, 64 connections, a
/// fresh service with up-to-date statistics: 2 batches 591/s, 4 713 and
/// 725/s, 8 797–890/s (the machine 95 % busy), 16 594 and 601/s
/// (docs/PERFORMANCE.md, session 10). MySQL keeps 4, the number its
/// cluster tests ran with; it was not measured beyond them. Batches of one
/// instance do not wait for each other at the host's and the global quota
/// counters: each counts in its own row of them (`counting_slots`).
fn register_batches(backend: DbBackend) -> Arc<GroupCommit> {
    let writers = match backend {
        DbBackend::Sqlite => 1,
        DbBackend::Postgres => 8,
        _ => 4,
    };
    Arc::new(GroupCommit::new(writers))
}

/// Rows per shared quota counter: SQLite writes one transaction at a time,
/// so one; elsewhere more than the register batches and resends of an
/// instance write at once, with room for a second instance's.
fn counting_slots(backend: DbBackend) -> Arc<CountingSlots> {
    let slots = match backend {
        DbBackend::Sqlite => 1,
        _ => 16,
    };
    Arc::new(CountingSlots::new(slots))
}

/// The turns at SQLite's one writer: requests queue at `requests` first, so
/// at most one of them waits at `writer` at a time; the delivery loop goes
/// straight to `writer` and so waits for one request's write at most, not
/// for every queued one. Both locks are fair (first come, first served).
/// `turns` counts the turns taken, so the checkpointer knows whether
/// anything may have been written since it last looked.
/// `connection` is where the writes made in a turn run (`db::sqlite_writer`).
pub struct WriterQueue {
    pub requests: Arc<Mutex<()>>,
    pub writer: Arc<Mutex<()>>,
    pub turns: AtomicU64,
    pub connection: DatabaseConnection,
}

impl WriterQueue {
    fn on(db: &DatabaseConnection, metrics: Arc<Metrics>) -> Self {
        let options = db.get_sqlite_connection_pool().connect_options();
        Self {
            requests: Arc::default(),
            writer: Arc::default(),
            turns: AtomicU64::default(),
            connection: crate::db::sqlite_writer(&options, metrics),
        }
    }
}
