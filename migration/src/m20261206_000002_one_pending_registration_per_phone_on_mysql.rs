//! At most one pending registration per host and phone, kept by the
//! database on MySQL too, as m20261202_000002 keeps it on PostgreSQL and
//! SQLite. MySQL has no partial index: the key is on a stored generated
//! column, the phone while the registration is pending and NULL after,
//! and a unique key allows any number of NULLs.
//!
//! Without it every register on MySQL ran the supersede, for its
//! range lock of the phone in `idx_registration_host_phone_created`: that
//! lock was what kept two registers of one phone apart. Two register
//! batches of one server then each held the gap their supersede locked
//! and waited to insert into the other's, a deadlock run again whole:
//! 0.18–0.19 transactions run again a register on the standalone
//! MariaDB, a quarter of the registers on a 3-node Galera cluster, where
//! one register in about 7,000 lost all its attempts (docs/PERFORMANCE.md,
//! session 40). With the key a register whose checks saw no pending
//! registration of its phone skips the supersede, and a second pending
//! registration written meanwhile by another transaction (or, on Galera,
//! another node) is refused at its insert or at certification: a lost
//! race, run again whole, which then meets the first and the cooldown.
//!
//! The key leads with the pending phone, unlike the table's other
//! indexes. Led by the host, it was one MySQL could search by the host
//! alone, and the register checks' search of a host's registrations of a
//! phone became the statement the registers waited on: a third of the
//! rate with three instances on one server. Led by the phone, it serves
//! only searches of a pending phone, which nothing but the key makes.
//!
//! Stored, not virtual: session 12 tried an index on a virtual column,
//! and in its first Galera run two nodes grew to 12 and 20 GiB and were
//! killed for memory. A stored column's index is an ordinary one.
//!
//! Adding a stored column rebuilds the table. On a large table run it in
//! a quiet hour (on Galera, DDL blocks every node while it runs: see
//! docs/CLUSTERS.md). Instances still on the old version go on
//! superseding before every insert, so during a rolling deploy they only
//! ever meet the key when they lose a race, which they run again whole.
//!
//! Earlier duplicates are settled first, as m20261202_000002 does: the
//! newest pending registration of each host and phone stays pending, the
//! older ones are superseded.
use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Older pending registrations of a phone that has a newer one. The
/// newest is never updated and matches every older one, so the order in
/// which MySQL updates the joined rows does not matter.
const SETTLE: &str = "UPDATE registration older JOIN registration newer \
     ON newer.host_id = older.host_id AND newer.phone = older.phone \
     AND newer.status = 'pending' AND (newer.created_at > older.created_at \
     OR (newer.created_at = older.created_at AND newer.id > older.id)) \
     SET older.status = 'superseded' WHERE older.status = 'pending'";

const CREATE: &str = "ALTER TABLE registration \
     ADD COLUMN pending_phone VARCHAR(20) \
     AS (CASE WHEN status = 'pending' THEN phone END) STORED, \
     ADD UNIQUE INDEX idx_registration_one_pending (pending_phone, host_id)";

const DROP: &str = "ALTER TABLE registration \
     DROP INDEX idx_registration_one_pending, DROP COLUMN pending_phone";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::MySql {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(SETTLE).await?;
        db.execute_unprepared(CREATE).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::MySql {
            return Ok(());
        }
        manager.get_connection().execute_unprepared(DROP).await?;
        Ok(())
    }
}
