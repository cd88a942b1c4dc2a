//! `idx_registration_host_created (host_id, created_at)` goes: no statement
//! needs it, and it was a trap. Every lookup of a host's registrations also
//! names the phone, which `idx_registration_host_phone_created (host_id,
//! phone, created_at)` answers, and that index also serves the statements
//! that name only the host (its leading column) and the foreign key.
//! While a table's statistics said it was nearly empty, PostgreSQL tied the
//! two indexes on cost and took this one, filtering every registration of
//! the host for the phone: the register check's "last registration of the
//! phone" walked it backwards, and generic plans of the superseding update
//! kept walking it after statistics came (docs/PERFORMANCE.md, session 25).
//! Dropping it also spares every register one index entry.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_registration_host_created")
                    .table(Registration::Table)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("idx_registration_host_created")
                    .table(Registration::Table)
                    .col(Registration::HostId)
                    .col(Registration::CreatedAt)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Registration {
    Table,
    HostId,
    CreatedAt,
}
