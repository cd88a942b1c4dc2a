//! Schema migrations, run once however many instances start together.
use std::time::Duration;

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, TransactionTrait};

use super::lost_race;

/// Brings the schema up to date once, however many instances start at
/// once. SQLite runs each migration in its own transaction; one that loses
/// to another process is tried again (see [`SQLITE_RACE_FOR`]). PostgreSQL
/// holds an advisory lock in a transaction while the migrations run on
/// other connections. The MySQL family takes a lease row instead (see
/// [`migrate_under_lease`]).
pub(super) async fn migrate_once(db: &DatabaseConnection) -> anyhow::Result<()> {
    match db.get_database_backend() {
        DbBackend::Sqlite => {
            let give_up = std::time::Instant::now() + SQLITE_RACE_FOR;
            let mut attempt: u64 = 1;
            loop {
                match Migrator::up(db, None).await {
                    Ok(()) => return Ok(()),
                    Err(error) if std::time::Instant::now() < give_up => {
                        tracing::debug!(error = %error, attempt, "migration raced another process; trying again");
                        tokio::time::sleep(Duration::from_millis((50 * attempt).min(500))).await;
                        attempt += 1;
                    }
                    Err(error) => {
                        return Err(error).context("Failed to run database migrations");
                    }
                }
            }
        }
        DbBackend::Postgres => migrate_under_advisory_lock(db).await,
        _ => migrate_under_lease(db).await,
    }
}

/// How long an instance keeps trying SQLite's migrations while another
/// process runs them. A loser does not wait for the winner: SQLite refuses
/// it at once, or it finds a table that the winner created after it read
/// what was applied, so any error is tried again until this has passed.
/// It is the winner's whole run that the loser waits out, a disk flush per
/// migration. Until session 31 it gave up after ten tries in about two
/// seconds and exited, which would explain one CI run where one of two
/// instances started together on a new file never became ready (not
/// reproduced here: `tests/cli.rs` now shows such an instance's log).
const SQLITE_RACE_FOR: Duration = Duration::from_secs(30);

async fn migrate_under_advisory_lock(db: &DatabaseConnection) -> anyhow::Result<()> {
    // Any fixed number; it names the lock among this database's advisory locks.
    const PG_LOCK_KEY: i64 = 0x6372_6d69_6772;
    let txn = db.begin().await.context("Failed to begin migration lock")?;
    txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({PG_LOCK_KEY})"))
        .await
        .context("Failed to take the migration lock")?;
    let migrated = Migrator::up(db, None)
        .await
        .context("Failed to run database migrations");
    txn.commit()
        .await
        .context("Failed to release the migration lock")?;
    migrated
}

/// How long a lease holder may take before another instance may take over:
/// a process that dies mid-migration delays the others by at most this.
const MIGRATION_LEASE_SECONDS: u32 = 120;

/// MySQL's `GET_LOCK` is local to one server, and on a Galera cluster
/// instances starting at once on different nodes would run the same DDL
/// together; MySQL DDL is not transactional, so the loser is left with a
/// half-applied migration. A row in `migration_lease` is replicated like
/// any write: two nodes claiming it at once conflict at commit and one gets
/// a serialization failure, so exactly one instance migrates while the
/// others wait and then find nothing left to do.
async fn migrate_under_lease(db: &DatabaseConnection) -> anyhow::Result<()> {
    db.execute_unprepared(
        "CREATE TABLE IF NOT EXISTS migration_lease (\
         id INT NOT NULL PRIMARY KEY, holder CHAR(32) NOT NULL, \
         expires_at DATETIME(6) NOT NULL)",
    )
    .await
    .context("Failed to create the migration lease table")?;
    let holder = uuid::Uuid::new_v4().simple().to_string();
    let give_up =
        std::time::Instant::now() + Duration::from_secs(u64::from(MIGRATION_LEASE_SECONDS) * 3);
    let mut waiting_logged = false;
    loop {
        match claim_migration_lease(db, &holder).await {
            Ok(true) => break,
            Ok(false) => {
                if !waiting_logged {
                    tracing::info!("another instance is migrating the database; waiting");
                    waiting_logged = true;
                }
            }
            Err(error) if lost_race(&error) => {
                tracing::debug!(error = %error, "migration lease raced another node; trying again");
            }
            Err(error) => return Err(error).context("Failed to claim the migration lease"),
        }
        if std::time::Instant::now() > give_up {
            anyhow::bail!(
                "Failed to run database migrations: another instance held the migration lease too long"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let migrated = Migrator::up(db, None)
        .await
        .context("Failed to run database migrations");
    let released = db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::MySql,
            "DELETE FROM migration_lease WHERE id = 1 AND holder = ?",
            [holder.into()],
        ))
        .await
        .context("Failed to release the migration lease");
    migrated?;
    released.map(|_| ())
}

/// Takes the lease when it is free or expired; true when this instance holds
/// it. (MySQL evaluates the assignments left to right, so the second still
/// sees the old expiry.)
async fn claim_migration_lease(db: &DatabaseConnection, holder: &str) -> Result<bool, DbErr> {
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::MySql,
        format!(
            "INSERT INTO migration_lease (id, holder, expires_at) \
             VALUES (1, ?, UTC_TIMESTAMP(6) + INTERVAL {MIGRATION_LEASE_SECONDS} SECOND) \
             ON DUPLICATE KEY UPDATE \
             holder = IF(expires_at < UTC_TIMESTAMP(6), VALUES(holder), holder), \
             expires_at = IF(expires_at < UTC_TIMESTAMP(6), VALUES(expires_at), expires_at)"
        ),
        [holder.into()],
    ))
    .await?;
    let current = db
        .query_one_raw(Statement::from_string(
            DbBackend::MySql,
            "SELECT holder FROM migration_lease WHERE id = 1",
        ))
        .await?
        .map(|row| row.try_get::<String>("", "holder"))
        .transpose()?;
    Ok(current.as_deref() == Some(holder))
}

/// Whether every migration this build knows has been applied.
pub async fn migrations_applied(db: &DatabaseConnection) -> anyhow::Result<bool> {
    let pending = Migrator::get_pending_migrations_read_only(db)
        .await
        .context("Failed to read the applied migrations")?;
    Ok(pending.is_empty())
}
