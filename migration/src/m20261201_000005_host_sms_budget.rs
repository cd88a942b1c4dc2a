//! SMS spend per host: a monthly SMS budget on the host, the count of SMS
//! queued for it each calendar month (UTC) with when its 80 % warning went
//! out, and the recipient's country on each message so that a host's sends
//! can be grouped by country without reading phone numbers back.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Host::Table)
                    .add_column(integer_null(Host::MonthlySmsBudget))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(OutboxMessage::Table)
                    .add_column(string_len_null(OutboxMessage::Country, 2))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_outbox_created")
                    .table(OutboxMessage::Table)
                    .col(OutboxMessage::CreatedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(HostSmsMonth::Table)
                    .if_not_exists()
                    .col(uuid(HostSmsMonth::HostId))
                    // `2026-12`: the calendar month in UTC.
                    .col(string_len(HostSmsMonth::Month, 7))
                    .col(integer(HostSmsMonth::SmsQueued).default(0))
                    .col(timestamp_with_time_zone_null(HostSmsMonth::WarnedAt))
                    .primary_key(
                        Index::create()
                            .col(HostSmsMonth::HostId)
                            .col(HostSmsMonth::Month),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(HostSmsMonth::Table, HostSmsMonth::HostId)
                            .to(Host::Table, Host::Id),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(HostSmsMonth::Table).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("idx_outbox_created")
                    .table(OutboxMessage::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(OutboxMessage::Table)
                    .drop_column(OutboxMessage::Country)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Host::Table)
                    .drop_column(Host::MonthlySmsBudget)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Host {
    Table,
    Id,
    MonthlySmsBudget,
}

#[derive(DeriveIden)]
enum OutboxMessage {
    Table,
    Country,
    CreatedAt,
}

#[derive(DeriveIden)]
enum HostSmsMonth {
    Table,
    HostId,
    Month,
    SmsQueued,
    WarnedAt,
}
