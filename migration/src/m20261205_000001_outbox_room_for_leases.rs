//! Room in each page of `outbox_message` for its messages' leases
//! (PostgreSQL). Every message is updated twice: the delivery loop's claim
//! (`lease_until`, `lease_token`) and the recorded result. The claim
//! changes no indexed column, so PostgreSQL can write the new row version
//! beside the old one on the same page and add no index entry (a HOT
//! update), but only if the page has room; rows inserted into full pages
//! left none, and each claim wrote a new entry into each of the table's
//! four indexes. With pages filled to 70 %, every claim is a HOT update:
//! half of the table's updates instead of a quarter, and a register with
//! email writes 7 % less WAL, fewer index entries to vacuum later; its
//! rate and the database's CPU moved within the noise (docs/PERFORMANCE.md,
//! session 31). Only pages written from now on keep the room. SQLite and
//! MySQL have no such setting per table.
use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("ALTER TABLE outbox_message SET (fillfactor = 70)")
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("ALTER TABLE outbox_message RESET (fillfactor)")
                .await?;
        }
        Ok(())
    }
}
