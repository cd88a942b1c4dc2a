//! Whether this instance can serve: what `/readyz` reports.
use std::sync::atomic::Ordering;

use chrono::Duration;
use sea_orm::DbBackend;

use super::outbox;
use crate::{
    db,
    error::CoreResult,
    metrics::Snapshot,
    state::{Core, Waiting},
};

/// Each check of readiness; ready when all hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub database: bool,
    /// On a Galera node: the node is in the cluster's primary component
    /// (`wsrep_ready`). Always true elsewhere.
    pub cluster: bool,
    pub migrations: bool,
    pub dispatcher: bool,
}

impl Readiness {
    pub fn is_ready(self) -> bool {
        self.database && self.cluster && self.migrations && self.dispatcher
    }
}

/// Cheap checks: one ping, on Galera one status read, one read of the
/// migrations table, one atomic.
pub async fn readiness(core: &Core) -> Readiness {
    let database = core.db.ping().await.is_ok();
    let cluster = !core.galera || (database && db::cluster_ready(&core.db).await);
    let migrations = database && cluster && db::migrations_applied(&core.db).await.unwrap_or(false);
    Readiness {
        database,
        cluster,
        migrations,
        dispatcher: dispatcher_alive(core),
    }
}

/// The delivery loop wakes at least every poll interval; three missed
/// rounds (and never less than 30 s) mean it is stuck or gone.
fn dispatcher_alive(core: &Core) -> bool {
    let beat = core.dispatcher_beat.load(Ordering::Relaxed);
    if beat == 0 {
        return false;
    }
    let poll = i64::try_from(core.settings.delivery.poll_interval_ms).unwrap_or(i64::MAX / 4);
    let allowed = Duration::milliseconds(poll.saturating_mul(3)).max(Duration::seconds(30));
    core.clock.now().timestamp_millis() - beat <= allowed.num_milliseconds()
}

/// A count of more waiting messages than this is kept for a while.
pub const COUNT_KEPT_FROM: i64 = 1_000;
/// How long a large count of waiting messages is reused.
pub const COUNT_KEPT_FOR_MS: i64 = 1_000;

/// `/metrics` is served without a token, and each count of waiting
/// messages walks the due index's entry of every one of them: a backlog (a
/// gateway down for an hour) made every scrape, however frequent, a read
/// of all of it. Scrapes count one at a time, and a count that found more
/// than [`COUNT_KEPT_FROM`] waiting is reused for [`COUNT_KEPT_FOR_MS`],
/// by the scrapes that waited on it too: a flood makes one count of a
/// backlog a second. A smaller count is cheap and never reused, so a
/// drained outbox reads as empty at once.
async fn waiting_messages(core: &Core) -> CoreResult<Waiting> {
    let mut last = core.waiting_count.0.lock().await;
    let now = core.clock.now();
    if let Some((counted_at, waiting)) = &*last {
        let age = now - *counted_at;
        if age >= Duration::zero() && age < Duration::milliseconds(COUNT_KEPT_FOR_MS) {
            return Ok(waiting.clone());
        }
    }
    let waiting = outbox::waiting_by_channel(core).await?;
    let total: i64 = waiting.iter().map(|(_, count, _)| count).sum();
    *last = (total > COUNT_KEPT_FROM).then(|| (now, waiting.clone()));
    Ok(waiting)
}

/// The figures `/metrics` reads at scrape time.
pub async fn snapshot(core: &Core) -> CoreResult<Snapshot> {
    let now = core.clock.now();
    let outbox = waiting_messages(core)
        .await?
        .into_iter()
        .map(|(channel, depth, oldest)| {
            let age = oldest.map_or(0.0, |at| {
                (now - at).num_milliseconds().max(0) as f64 / 1000.0
            });
            (channel, depth, age)
        })
        .collect();
    let (connections, idle) = match core.db.get_database_backend() {
        DbBackend::Postgres => {
            let pool = core.db.get_postgres_connection_pool();
            (pool.size(), pool.num_idle())
        }
        DbBackend::MySql => {
            let pool = core.db.get_mysql_connection_pool();
            (pool.size(), pool.num_idle())
        }
        _ => {
            let pool = core.db.get_sqlite_connection_pool();
            (pool.size(), pool.num_idle())
        }
    };
    Ok(Snapshot {
        outbox,
        hashes_waiting: i64::try_from(core.hashing.waiting()).unwrap_or(i64::MAX),
        hashes_running: i64::try_from(core.hashing.in_progress()).unwrap_or(i64::MAX),
        hash_memory_bytes: i64::try_from(core.hashing.memory_held()).unwrap_or(i64::MAX),
        pool_connections: i64::from(connections),
        pool_idle: idle_connections(connections, idle),
    })
}

/// sqlx keeps its idle count in an atomic that a release and a take racing
/// each other can leave below zero for a moment, wrapped to nearly
/// `usize::MAX`; read then, the gauge showed 9.2e18 idle connections under
/// load. More idle connections than open ones is that moment: none idle.
fn idle_connections(open: u32, idle: usize) -> i64 {
    if idle > open as usize {
        0
    } else {
        i64::try_from(idle).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::idle_connections;

    #[test]
    fn a_wrapped_idle_count_reads_as_none_idle() {
        assert_eq!(idle_connections(16, 3), 3);
        assert_eq!(idle_connections(16, 16), 16);
        assert_eq!(idle_connections(16, usize::MAX - 1), 0);
        assert_eq!(idle_connections(0, 0), 0);
    }
}
