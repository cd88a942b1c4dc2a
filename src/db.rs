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
    galera_sync_wait: bool,
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
    if galera_sync_wait {
        options.map_sqlx_mysql_pool_opts(|pool| {
            pool.after_connect(|conn, _| Box::pin(sync_wait_on_galera(conn)))
        });
    }
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

/// On a Galera cluster a read on one node can miss what another node just
/// committed; `wsrep_sync_wait = 1` makes each read wait until this node has
/// applied everything committed before it, so no rule decides on a stale
/// read. Servers without wsrep (plain MySQL or MariaDB) are left as they are.
async fn sync_wait_on_galera(
    conn: &mut sea_orm::sqlx::MySqlConnection,
) -> Result<(), sea_orm::sqlx::Error> {
    use sea_orm::sqlx::{Executor, Row};
    let wsrep_on = match conn.fetch_one("SELECT @@wsrep_on").await {
        Ok(row) => row.try_get::<i64, _>(0).unwrap_or(0) == 1,
        // Oracle MySQL has no such variable.
        Err(_) => false,
    };
    if wsrep_on {
        conn.execute("SET SESSION wsrep_sync_wait = 1").await?;
    }
    Ok(())
}

/// Brings the schema up to date once, however many instances start at
/// once. On PostgreSQL and MySQL a database lock, held by a transaction's
/// connection while the migrations run on others, makes the others wait and
/// then find nothing left to do. SQLite runs each migration in its own
/// transaction; one that loses to another process is simply tried again.
async fn migrate_once(db: &DatabaseConnection) -> anyhow::Result<()> {
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
    // GET_LOCK is local to one server: instances starting at once on
    // different nodes of a Galera cluster can still race, and the loser's
    // DDL fails; like SQLite, it tries again and finds the work done.
    let mut attempt = 1;
    loop {
        match migrate_under_lock(db, backend).await {
            Ok(()) => return Ok(()),
            Err(error) if attempt < 10 && backend == DbBackend::MySql => {
                tracing::debug!(error = %error, attempt, "migration raced another node; trying again");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

async fn migrate_under_lock(db: &DatabaseConnection, backend: DbBackend) -> anyhow::Result<()> {
    const LOCK_NAME: &str = "customer_registration_migrations";
    // Any fixed number; it names the lock among this database's advisory locks.
    const PG_LOCK_KEY: i64 = 0x6372_6d69_6772;
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
