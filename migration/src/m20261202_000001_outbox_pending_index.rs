//! The delivery loop's index holds only the messages waiting to be sent.
//!
//! `idx_outbox_due (status, next_attempt_at)` led with the status, so on
//! PostgreSQL a statement that changes one message by id and checks that it
//! is still pending could be planned through it, reading every pending
//! entry (and every dead one not yet vacuumed) instead of one row by its
//! key; with statistics out of date it was, on every claim and every
//! recorded send (docs/PERFORMANCE.md, session 10). A partial index on the
//! time alone, of pending messages only, serves the due query: its
//! condition names the status as a constant, which the reusable (generic)
//! plan of a statement that binds the status as a parameter cannot match.
//! MySQL has no partial indexes and keeps the composite one.
use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const CREATE_PENDING: &str = "CREATE INDEX idx_outbox_pending ON outbox_message (next_attempt_at) \
     WHERE status = 'pending'";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::MySql {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(CREATE_PENDING).await?;
        db.execute_unprepared("DROP INDEX idx_outbox_due").await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::MySql {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX idx_outbox_due ON outbox_message (status, next_attempt_at)",
        )
        .await?;
        db.execute_unprepared("DROP INDEX idx_outbox_pending")
            .await?;
        Ok(())
    }
}
