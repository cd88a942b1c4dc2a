//! An index for "this host's latest registration of this phone" (the
//! register cooldown, read on every register). Without it SQLite answered
//! from the host's index, reading every registration of the host and
//! sorting them: a cost that grew with the host's history.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("idx_registration_host_phone_created")
                    .table(Registration::Table)
                    .col(Registration::HostId)
                    .col(Registration::Phone)
                    .col(Registration::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_registration_host_phone_created")
                    .table(Registration::Table)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Registration {
    Table,
    HostId,
    Phone,
    CreatedAt,
}
