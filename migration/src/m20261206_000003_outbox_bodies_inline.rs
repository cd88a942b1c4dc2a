//! A message's sealed bodies stay in its row on PostgreSQL.
//!
//! PostgreSQL moves a row's long values to a separate TOAST table once the
//! row passes about 2 KB, compressing them first where that saves a quarter.
//! An email's row is just past it: its sealed HTML and text bodies are
//! ciphertext in base64, which does not compress, so every email put its
//! HTML body in the TOAST table (a row and an index entry there) and the
//! recorded result deleted it again (docs/PERFORMANCE.md, session 43).
//! `toast_tuple_target` raises the length a row is brought down to, to the
//! most a page allows: rows up to about 8 KB keep their values inline and
//! are not compressed, and a larger one is still moved out. The bodies are
//! erased once sent, so sent rows stay small. SQLite and MySQL keep values
//! of this length in the row already.
use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE outbox_message SET (toast_tuple_target = 8160)")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE outbox_message RESET (toast_tuple_target)")
            .await?;
        Ok(())
    }
}
