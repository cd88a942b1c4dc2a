//! Fingerprints of the keys a database was used with.
use sea_orm_migration::{prelude::*, schema::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ServiceKey::Table)
                    .col(string_len(ServiceKey::Name, 32).primary_key())
                    .col(string_len(ServiceKey::Fingerprint, 64))
                    .col(timestamp_with_time_zone(ServiceKey::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == DbBackend::MySql {
            manager
                .get_connection()
                .execute_unprepared(
                    "ALTER TABLE `service_key` MODIFY `updated_at` DATETIME(6) NOT NULL",
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ServiceKey::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ServiceKey {
    Table,
    Name,
    Fingerprint,
    UpdatedAt,
}
