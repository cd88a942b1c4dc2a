//! The delivery loop's index can be used by its due list alone.
//!
//! `idx_outbox_pending` (`WHERE status = 'pending'`) kept reusable plans of
//! statements that bind the status from using it, but not PostgreSQL's
//! custom plans, which it makes with the bound values as constants: the
//! claim (`UPDATE ... WHERE id IN (...) AND status = $n`) and the read of
//! what it leased were planned through it whenever the statistics said few
//! messages were pending, filtering every pending entry by id, the whole
//! backlog on every pass under load (100–376 entries read a register,
//! docs/PERFORMANCE.md, session 22). This index adds `next_attempt_at IS
//! NOT NULL` to its condition, true of every row (the column is NOT NULL):
//! a planner uses a partial index only for a query whose own conditions
//! imply the index's, and only a statement comparing `next_attempt_at`
//! implies it (PostgreSQL and SQLite both take a comparison of a column
//! as proof that it is not null). The due list compares it; a statement
//! that picks messages by id does not, and goes by the primary key.
//! MySQL has no partial indexes and keeps its composite one.
use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const CREATE_DUE: &str = "CREATE INDEX idx_outbox_due_pending ON outbox_message (next_attempt_at) \
     WHERE status = 'pending' AND next_attempt_at IS NOT NULL";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::MySql {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(CREATE_DUE).await?;
        db.execute_unprepared("DROP INDEX idx_outbox_pending")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::MySql {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX idx_outbox_pending ON outbox_message (next_attempt_at) \
             WHERE status = 'pending'",
        )
        .await?;
        db.execute_unprepared("DROP INDEX idx_outbox_due_pending")
            .await?;
        Ok(())
    }
}
