//! SQLite's writes on one connection of their own.
//!
//! In WAL mode a connection that starts a transaction after another
//! connection committed throws its whole page cache away. The pool hands
//! out its connections in turn, so the writer of each batch was rarely the
//! writer of the one before: every write transaction began with a cold
//! cache and read again, one `pread` a page, the index pages it was about
//! to change (docs/PERFORMANCE.md, session 49). Writes take turns in the
//! process anyway (`service::write`), so one connection loses nothing: it
//! is the only one that commits, and its cache stays warm from one turn to
//! the next. A larger cache than the pool's keeps the indexes' inner pages
//! and the tables' last pages.
use std::{sync::Arc, time::Duration};

use sea_orm::{
    DatabaseConnection, SqlxSqliteConnector,
    sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions},
};

use crate::metrics::Metrics;

/// The writer's page cache, in KiB (SQLite's negative `cache_size`). One
/// connection's: the pool's and the lookups' keep 1 MiB each.
const WRITER_CACHE_KIB: u32 = 8 * 1024;

/// A lazily opened pool of one connection to the file `pool_options`
/// opens, for the writes made in this process's writer turn; its statements
/// are counted like the main pool's.
pub fn sqlite_writer(
    pool_options: &SqliteConnectOptions,
    metrics: Arc<Metrics>,
) -> DatabaseConnection {
    let options = pool_options
        .clone()
        .pragma("cache_size", format!("-{WRITER_CACHE_KIB}"));
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        // A file handle cannot go stale: no ping, and kept open while idle
        // (with no timeouts the pool starts no task of its own).
        .test_before_acquire(false)
        .idle_timeout(None)
        .max_lifetime(None)
        // Only the holder of the writer turn asks for it, so it is free
        // when asked for, but for the rollback of a transaction dropped
        // half-way, which the pool finishes first.
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with(options);
    let mut db = SqlxSqliteConnector::from_sqlx_sqlite_pool(pool);
    db.set_metric_callback(move |info| {
        super::statement_ran(&metrics, &info.statement.sql, info.elapsed);
    });
    db
}
