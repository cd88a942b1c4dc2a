use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
};

use crate::metrics::Metrics;

mod galera;
mod lookups;
mod migrations;
pub mod together;
mod transactions;
mod writer;

use galera::{autocommit_again, on_galera_node};
pub use galera::{cluster_ready, is_galera};
pub use lookups::Lookups;
use migrations::migrate_once;
pub use migrations::migrations_applied;
pub use transactions::{TransactionEndedByCluster, begin, commit, lost_race};
pub use writer::sqlite_writer;

/// Statements slower than this are logged (without their parameters).
const SLOW_STATEMENT: Duration = Duration::from_millis(500);

/// A pooled connection to a database server idle at least this long is
/// pinged before use; see `connect_and_migrate`.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// Pooled connections to a database server.
const SERVER_POOL_CONNECTIONS: u32 = 16;

/// Pooled connections to an SQLite file, beside the lookups' own
/// (`lookups::SQLITE_LOOKUP_CONNECTIONS`) and the writer's (`writer`): the
/// writes made in the process's writer turn (`service::write`) run on that
/// one, and the pool serves the reads that are not lookups and the few
/// writes outside the turn. Each connection keeps
/// its own page cache and up to 100 prepared statements, among them a
/// register batch's inserts in every batch size it has met (a 32-row insert
/// is tens of KiB prepared): with 16, an instance grew 20 to 25 MiB more
/// through `bench/run`, at the same rates (docs/PERFORMANCE.md, session 30).
const SQLITE_POOL_CONNECTIONS: u32 = 4;

/// The write-ahead log's length, in pages, past which SQLite checkpoints
/// in the commit that took it there, inside the one writer's turn (1,000
/// by default: every other register batch at 64 connections). The
/// serving process's checkpointer (`service::checkpoints`) starts the log
/// over long before this; the limit only bounds it where that does not
/// run (the CLI, another program on the file) or falls behind: 16,000
/// pages of 4 KiB, 64 MiB.
const SQLITE_CHECKPOINT_IN_COMMIT_PAGES: u32 = 16_000;

/// The file an `sqlite://PATH?OPTIONS` URL names; `None` for other URLs.
pub fn sqlite_file(url: &str) -> Option<&std::path::Path> {
    let rest = url.strip_prefix("sqlite://")?;
    Some(std::path::Path::new(rest.split('?').next().unwrap_or(rest)))
}

/// Connects and brings the schema up to date. For SQLite the file and its
/// directory are created, and WAL lets readers proceed during writes.
/// Statements are counted in `metrics` (the DataLoader tests read them)
/// and slow ones are logged without their parameters, which may hold PII.
pub async fn connect_and_migrate(
    url: &str,
    galera_sync_wait: bool,
    metrics: Arc<Metrics>,
) -> anyhow::Result<DatabaseConnection> {
    if let Some(dir) = sqlite_file(url)
        .and_then(std::path::Path::parent)
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("Failed to create database directory {}", dir.display()))?;
    }
    let sqlite = url.starts_with("sqlite:");
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(if sqlite {
            SQLITE_POOL_CONNECTIONS
        } else {
            SERVER_POOL_CONNECTIONS
        })
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false);
    // By default every connection taken from the pool is pinged first: one
    // more round trip for every read outside a transaction and every
    // transaction. An SQLite connection is a file handle and cannot go
    // stale, so it is never pinged. A server's connection is pinged only
    // after a second idle, which is when a restart, a proxy or a firewall
    // has had time to drop it; a hot one that broke fails its statement,
    // which answers 503 DATABASE_UNAVAILABLE, and the pool replaces it.
    if sqlite {
        options.test_before_acquire(false);
        // Each connection keeps its own page cache (2 MiB by default) once
        // the database outgrows it; the pages stay in the kernel's file
        // cache either way.
        options.map_sqlx_sqlite_opts(|sqlite| {
            sqlite
                .pragma("cache_size", "-1024")
                .pragma(
                    "wal_autocheckpoint",
                    SQLITE_CHECKPOINT_IN_COMMIT_PAGES.to_string(),
                )
                // A multi-row statement inside a transaction keeps the
                // pages it changes in a statement journal, so that it can
                // be undone alone; past 64 KiB (a register batch's inserts)
                // that journal spills to a temporary file, one write() per
                // page. In memory it is a copy and nothing else.
                .pragma("temp_store", "memory")
        });
    } else {
        options.test_before_acquire_if_idle_for(PING_IF_IDLE_FOR);
    }
    if url.starts_with("mysql:") {
        let galera = Arc::new(AtomicBool::new(false));
        options.map_sqlx_mysql_pool_opts(move |pool| {
            let seen = galera.clone();
            pool.after_connect(move |conn, _| {
                let seen = seen.clone();
                Box::pin(async move {
                    let on_galera = on_galera_node(conn, galera_sync_wait).await?;
                    seen.fetch_or(on_galera, Ordering::Relaxed);
                    Ok(())
                })
            })
            .after_release({
                let galera = galera.clone();
                move |conn, _| {
                    let galera = galera.load(Ordering::Relaxed);
                    Box::pin(async move { autocommit_again(conn, galera).await })
                }
            })
        });
    }
    let mut db = Database::connect(options)
        .await
        .context("Failed to connect to the database")?;
    db.set_metric_callback(move |info| statement_ran(&metrics, &info.statement.sql, info.elapsed));
    if db.get_database_backend() == DbBackend::Sqlite {
        enable_wal(&db).await?;
        if !plans_without_bound_values(&db).await? {
            tracing::warn!(
                "this build's SQLite lacks ENABLE_QPSG: statements with `LIMIT ?` are parsed \
                 and planned again on every execution; build from the repository, whose \
                 .cargo/config.toml sets LIBSQLITE3_FLAGS"
            );
        }
    }
    migrate_once(&db).await?;
    Ok(db)
}

/// Counts a statement and logs it (its SQL at `trace`, without
/// parameters at `warn` when slow), wherever it ran.
fn statement_ran(metrics: &Metrics, sql: &str, elapsed: Duration) {
    metrics.db_statement();
    tracing::trace!(sql = %sql, "database statement");
    if elapsed > SLOW_STATEMENT {
        tracing::warn!(
            elapsed_ms = elapsed.as_millis() as u64,
            sql = %sql,
            "slow database statement"
        );
    }
}

/// Whether SQLite was built with its query planner stability guarantee
/// (`.cargo/config.toml`). Without it SQLite plans `LIMIT ?` (every
/// sea-orm `.one()`) and a partial index's condition from the values bound
/// when the statement was prepared, and marks the statement to be prepared
/// again whenever such a value is bound anew: on every execution.
async fn plans_without_bound_values(db: &DatabaseConnection) -> anyhow::Result<bool> {
    let found = db
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT 1 AS found FROM pragma_compile_options WHERE compile_options = 'ENABLE_QPSG'",
        ))
        .await
        .context("Failed to read SQLite's compile options")?;
    Ok(found.is_some())
}

/// SQLite's passive checkpoint (`service::checkpoints`): copies what the
/// log holds that no reader still needs, without waiting for writers, and
/// returns the log's length and how much of it is copied, in pages (both
/// 0 when the file is not in WAL mode, or the database not SQLite). It
/// runs on the pool beneath sea-orm, so it is not counted among the
/// statements (`Metrics::db_statement`): those are the requests' and the
/// delivery's, which tests and `bench/work-per-request` count, and
/// SQLite's own checkpoints inside commits never were.
pub async fn sqlite_passive_checkpoint(db: &DatabaseConnection) -> anyhow::Result<LogPages> {
    use sea_orm::sqlx::Row;
    if db.get_database_backend() != DbBackend::Sqlite {
        return Ok(LogPages::default());
    }
    let row = sea_orm::sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(db.get_sqlite_connection_pool())
        .await
        .context("Failed to checkpoint SQLite's log")?;
    // The row is (busy, pages in the log, pages copied); -1 without WAL.
    let read = |column| {
        row.try_get::<i64, _>(column)
            .map(|pages| pages.max(0))
            .context("Failed to read SQLite's checkpoint")
    };
    Ok(LogPages {
        written: read(1)?,
        copied: read(2)?,
    })
}

/// SQLite's log after a checkpoint, in pages.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogPages {
    pub written: i64,
    pub copied: i64,
}

/// Switches a SQLite file to write-ahead logging. Instances starting
/// together on a new file race for it: the switch needs the file to itself,
/// and while another connection is in the middle of a write SQLite refuses
/// at once ("database is locked", without waiting out its busy timeout,
/// since waiting could deadlock). Refused, it tries again for up to 10 s.
async fn enable_wal(db: &DatabaseConnection) -> anyhow::Result<()> {
    const TRIES: u32 = 100;
    let mut tries = 1;
    loop {
        match db.execute_unprepared("PRAGMA journal_mode=WAL;").await {
            Ok(_) => return Ok(()),
            Err(error) if tries < TRIES && lost_race(&error) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => return Err(error).context("Failed to enable WAL"),
        }
    }
}

/// Warns when the PostgreSQL server has autovacuum off. The service's
/// queries are planned from the tables' statistics, which autovacuum keeps:
/// on a server without it, tables that grew from empty still look empty to
/// the planner, which then reads a host's every registration for the
/// lookup of one phone (docs/PERFORMANCE.md, session 10).
pub async fn warn_without_autovacuum(db: &DatabaseConnection) {
    if db.get_database_backend() != DbBackend::Postgres {
        return;
    }
    let setting = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_setting('autovacuum') AS autovacuum",
        ))
        .await;
    if let Ok(Some(row)) = setting
        && row.try_get::<String>("", "autovacuum").as_deref() == Ok("off")
    {
        tracing::warn!(
            "autovacuum is off on this PostgreSQL server: run VACUUM (ANALYZE) on the \
             service's database regularly, or queries are planned from statistics of \
             empty tables"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `.cargo/config.toml` has the bundled SQLite built with its query
    /// planner stability guarantee.
    #[tokio::test]
    async fn sqlite_is_built_with_the_query_planner_stability_guarantee() {
        let db = Database::connect("sqlite::memory:").await.unwrap();
        assert!(plans_without_bound_values(&db).await.unwrap());
    }

    /// Every pooled SQLite connection keeps its statement journals (and
    /// other temporary storage) in memory, not in temporary files.
    #[tokio::test]
    async fn sqlite_connections_keep_temporary_storage_in_memory() {
        use sea_orm::sqlx::Row;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let db = connect_and_migrate(&url, false, Arc::new(Metrics::default()))
            .await
            .unwrap();
        let pool = db.get_sqlite_connection_pool();
        // Held at once, so that each is a connection of its own.
        let mut connections = Vec::new();
        for _ in 0..SQLITE_POOL_CONNECTIONS {
            connections.push(pool.acquire().await.unwrap());
        }
        for connection in &mut connections {
            let row = sea_orm::sqlx::query("PRAGMA temp_store")
                .fetch_one(&mut **connection)
                .await
                .unwrap();
            // 2 is MEMORY (0 the build's default, 1 FILE).
            assert_eq!(row.get::<i64, _>(0), 2);
        }
    }
}
