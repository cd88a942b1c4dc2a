//! A host's registrations are searched by (host, phone) and nothing else:
//! `idx_registration_host_phone_created (host_id, phone, created_at)` and
//! the one-pending key `(host_id, phone)` answer every such statement, the
//! ones that name only the host (their leading column) and the foreign key
//! included. Two older indexes go:
//! - `idx_registration_host_created (host_id, created_at)`, a trap. While
//!   the statistics said the table was nearly empty, PostgreSQL costed it
//!   the same as the (host, phone) index and took it, filtering every
//!   registration of the host for the phone: the register check's "last
//!   registration of the phone" walked it newest first, and generic plans
//!   of the superseding update kept walking it after statistics came
//!   (docs/PERFORMANCE.md, session 25).
//! - `idx_registration_phone_status (phone, status)`, from when a phone's
//!   registrations were looked up across hosts; no statement reads it
//!   since the phone guard became per host.
//!
//! Every register also writes two index entries fewer.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The indexes dropped, with their columns (for `down`).
const DROPPED: [(&str, [Registration; 2]); 2] = [
    (
        "idx_registration_host_created",
        [Registration::HostId, Registration::CreatedAt],
    ),
    (
        "idx_registration_phone_status",
        [Registration::Phone, Registration::Status],
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, _) in DROPPED {
            manager
                .drop_index(
                    Index::drop()
                        .name(name)
                        .table(Registration::Table)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, [first, second]) in DROPPED {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Registration::Table)
                        .col(first)
                        .col(second)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Registration {
    Table,
    HostId,
    Phone,
    Status,
    CreatedAt,
}
