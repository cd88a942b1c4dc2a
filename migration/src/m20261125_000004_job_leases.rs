//! Leases for jobs that one instance at a time runs (retention).
use sea_orm_migration::{prelude::*, schema::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(JobLease::Table)
                    .col(string_len(JobLease::Name, 32).primary_key())
                    .col(uuid(JobLease::Holder))
                    .col(timestamp_with_time_zone(JobLease::LeaseUntil))
                    .to_owned(),
            )
            .await?;
        if manager.get_database_backend() == DbBackend::MySql {
            manager
                .get_connection()
                .execute_unprepared(
                    "ALTER TABLE `job_lease` MODIFY `lease_until` DATETIME(6) NOT NULL",
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(JobLease::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum JobLease {
    Table,
    Name,
    Holder,
    LeaseUntil,
}
