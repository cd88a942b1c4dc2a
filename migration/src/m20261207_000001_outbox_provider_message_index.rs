//! Receipts find their message by the provider's id on the message itself.
//!
//! A send that went through is no longer a `delivery_attempt` row of its
//! own: the message already holds it (`sent_at`, `provider`,
//! `provider_message_id`), and the timeline reads it from there
//! (`service::outbox::history`). That row and its three index entries
//! were about a seventh of the database's work for a register's rows on
//! PostgreSQL (docs/PERFORMANCE.md, sessions 42 and 48). A receipt names
//! the send by the provider's id, so the messages get this index in their
//! place; only a sent message has an id, and PostgreSQL and SQLite index
//! only those (an equality on the column implies the condition). MySQL
//! has no partial indexes and indexes every row.
//! `idx_attempt_provider_message` stays for the sends a message moved on
//! from (a receipt's failover writes those as rows) and for the rows
//! written before this migration.
use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let condition = match manager.get_database_backend() {
            DbBackend::MySql => "",
            _ => " WHERE provider_message_id IS NOT NULL",
        };
        db.execute_unprepared(&format!(
            "CREATE INDEX idx_outbox_provider_message ON outbox_message (provider_message_id){condition}"
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_outbox_provider_message")
                    .table(Alias::new("outbox_message"))
                    .to_owned(),
            )
            .await
    }
}
