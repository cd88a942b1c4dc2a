use std::{sync::Arc, time::Duration};

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, TransactionTrait,
};

use crate::metrics::Metrics;

/// Statements slower than this are logged (without their parameters).
const SLOW_STATEMENT: Duration = Duration::from_millis(500);

/// Connects and brings the schema up to date. For SQLite the file and its
/// directory are created, and WAL lets readers proceed during writes.
/// Statements are counted in `metrics` (the DataLoader tests read them)
/// and slow ones are logged without their parameters, which may hold PII.
pub async fn connect_and_migrate(
    url: &str,
    metrics: Arc<Metrics>,
) -> anyhow::Result<DatabaseConnection> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or(path);
        if let Some(dir) = std::path::Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).with_context(|| {
                format!("Failed to create database directory {}", dir.display())
            })?;
        }
    }
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false);
    let mut db = Database::connect(options)
        .await
        .context("Failed to connect to the database")?;
    db.set_metric_callback(move |info| {
        metrics.db_statement();
        tracing::trace!(sql = %info.statement.sql, "database statement");
        if info.elapsed > SLOW_STATEMENT {
            tracing::warn!(elapsed_ms = info.elapsed.as_millis() as u64, sql = %info.statement.sql, "slow database statement");
        }
    });
    if db.get_database_backend() == DbBackend::Sqlite {
        db.execute_unprepared("PRAGMA journal_mode=WAL;")
            .await
            .context("Failed to enable WAL")?;
    }
    migrate_once(&db).await?;
    Ok(db)
}

/// Brings the schema up to date while holding a database-wide lock, so
/// instances starting together on an empty database migrate it once: the
/// others wait, then find nothing left to do. On PostgreSQL and MySQL the
/// lock is held by a transaction's connection while the migrations run on
/// others; SQLite has one writer at a time, so the transaction takes the
/// write lock and runs the migrations itself.
async fn migrate_once(db: &DatabaseConnection) -> anyhow::Result<()> {
    const LOCK_NAME: &str = "customer_registration_migrations";
    // Any fixed number; it names the lock among this database's advisory locks.
    const PG_LOCK_KEY: i64 = 0x6372_6d69_6772;
    let backend = db.get_database_backend();
    let txn = db.begin().await.context("Failed to begin migration lock")?;
    let lock = match backend {
        DbBackend::Postgres => format!("SELECT pg_advisory_xact_lock({PG_LOCK_KEY})"),
        DbBackend::MySql => format!("SELECT GET_LOCK('{LOCK_NAME}', 300)"),
        _ => "CREATE TABLE IF NOT EXISTS migration_lock (id INTEGER PRIMARY KEY)".to_owned(),
    };
    txn.execute_unprepared(&lock)
        .await
        .context("Failed to take the migration lock")?;
    if backend == DbBackend::Sqlite {
        // A write, so the transaction holds SQLite's write lock from here.
        txn.execute_unprepared("INSERT OR REPLACE INTO migration_lock (id) VALUES (1)")
            .await
            .context("Failed to take the migration lock")?;
    }
    let migrated = if backend == DbBackend::Sqlite {
        Migrator::up(&txn, None).await
    } else {
        Migrator::up(db, None).await
    }
    .context("Failed to run database migrations");
    if backend == DbBackend::MySql {
        txn.execute_unprepared(&format!("SELECT RELEASE_LOCK('{LOCK_NAME}')"))
            .await
            .context("Failed to release the migration lock")?;
    }
    if migrated.is_ok() {
        txn.commit()
            .await
            .context("Failed to commit the migrations")?;
    } else {
        txn.rollback()
            .await
            .context("Failed to release the migration lock")?;
    }
    migrated
}

/// Whether every migration this build knows has been applied.
pub async fn migrations_applied(db: &DatabaseConnection) -> anyhow::Result<bool> {
    let pending = Migrator::get_pending_migrations_read_only(db)
        .await
        .context("Failed to read the applied migrations")?;
    Ok(pending.is_empty())
}
