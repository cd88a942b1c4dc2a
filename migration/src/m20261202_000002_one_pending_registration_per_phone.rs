//! At most one pending registration per host and phone, kept by the
//! database. A register replaces the pending registration of its phone in
//! the same transaction that writes its own, and one instance writes two
//! registers of a phone one after the other; but two instances could each
//! find no pending registration, and both write one (PostgreSQL: three
//! instances registering one phone at once all answered 200). With this
//! key the later insert fails, and its transaction is run again whole:
//! it then finds the other's registration, which it replaces, or refuses
//! to replace within the register cooldown.
//!
//! Earlier duplicates are settled first: the newest pending registration
//! of each host and phone stays pending, the older ones are superseded,
//! as a later register would have made them.
//!
//! PostgreSQL and SQLite only. SQLite has one writer at a time, so the
//! key only guards against a bug there; PostgreSQL is where two instances
//! raced past each other. MySQL has no partial indexes, and the way round
//! that (a unique key on a virtual column, NULL unless pending) ran in the
//! Galera test once as two of the three nodes grew to 12 and 20 GiB and
//! were killed for memory, which three runs after did not repeat: it is
//! not shipped without knowing why (m20261206_000002 later did it with a
//! stored column). InnoDB does not need it on one server:
//! the supersede `UPDATE` locks the phone's range of
//! `idx_registration_host_phone_created` even when no row matches, so a
//! concurrent register of the phone waits for it or deadlocks and is run
//! again (three instances registering one phone at once: one answered 200,
//! in 10 rounds). On Galera that lock is local to a node, and registers of
//! one phone on two nodes conflict at commit on the phone's send counters
//! instead (docs/CLUSTERS.md).
use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Older pending registrations of a phone that has a newer one.
const SETTLE: &str = "UPDATE registration SET status = 'superseded' \
     WHERE status = 'pending' AND EXISTS (SELECT 1 FROM registration newer \
     WHERE newer.host_id = registration.host_id AND newer.phone = registration.phone \
     AND newer.status = 'pending' AND (newer.created_at > registration.created_at \
     OR (newer.created_at = registration.created_at AND newer.id > registration.id)))";

const CREATE: &str = "CREATE UNIQUE INDEX idx_registration_one_pending \
     ON registration (host_id, phone) WHERE status = 'pending'";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::MySql {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(SETTLE).await?;
        db.execute_unprepared(CREATE).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::MySql {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX idx_registration_one_pending")
            .await?;
        Ok(())
    }
}
