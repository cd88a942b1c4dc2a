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

/// Brings the schema up to date once, however many instances start at
/// once. On PostgreSQL and MySQL a database lock, held by a transaction's
/// connection while the migrations run on others, makes the others wait and
/// then find nothing left to do. SQLite runs each migration in its own
/// transaction; one that loses to another process is simply tried again.
async fn migrate_once(db: &DatabaseConnection) -> anyhow::Result<()> {
    const LOCK_NAME: &str = "customer_registration_migrations";
    // Any fixed number; it names the lock among this database's advisory locks.
    const PG_LOCK_KEY: i64 = 0x6372_6d69_6772;
    let backend = db.get_database_backend();
    if backend == DbBackend::Sqlite {
        let mut attempt = 1;
        loop {
            match Migrator::up(db, None).await {
                Ok(()) => return Ok(()),
                Err(error) if attempt < 10 => {
                    tracing::debug!(error = %error, attempt, "migration raced another process; trying again");
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                    attempt += 1;
                }
                Err(error) => {
                    return Err(error).context("Failed to run database migrations");
                }
            }
        }
    }
    let txn = db.begin().await.context("Failed to begin migration lock")?;
    let lock = match backend {
        DbBackend::Postgres => format!("SELECT pg_advisory_xact_lock({PG_LOCK_KEY})"),
        _ => format!("SELECT GET_LOCK('{LOCK_NAME}', 300)"),
    };
    txn.execute_unprepared(&lock)
        .await
        .context("Failed to take the migration lock")?;
    let migrated = Migrator::up(db, None)
        .await
        .context("Failed to run database migrations");
    if backend == DbBackend::MySql {
        txn.execute_unprepared(&format!("SELECT RELEASE_LOCK('{LOCK_NAME}')"))
            .await
            .context("Failed to release the migration lock")?;
    }
    txn.commit()
        .await
        .context("Failed to release the migration lock")?;
    migrated
}

/// Whether every migration this build knows has been applied.
pub async fn migrations_applied(db: &DatabaseConnection) -> anyhow::Result<bool> {
    let pending = Migrator::get_pending_migrations_read_only(db)
        .await
        .context("Failed to read the applied migrations")?;
    Ok(pending.is_empty())
}
