use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per ALTER: SQLite accepts only one change per statement.
        manager
            .alter_table(
                Table::alter()
                    .table(Registration::Table)
                    .add_column(string_len(Registration::Language, 8).default("en"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(OutboxMessage::Table)
                    .add_column(text_null(OutboxMessage::HtmlBody))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(OutboxMessage::Table)
                    .add_column(string_len_null(OutboxMessage::LastErrorClass, 16))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DeliveryAttempt::Table)
                    .col(uuid(DeliveryAttempt::Id).primary_key())
                    .col(uuid(DeliveryAttempt::MessageId))
                    .col(timestamp_with_time_zone(DeliveryAttempt::AttemptedAt))
                    .col(string_len(DeliveryAttempt::Outcome, 16))
                    .col(string_len_null(DeliveryAttempt::ErrorClass, 16))
                    .col(text_null(DeliveryAttempt::Error))
                    .col(string_len_null(DeliveryAttempt::ProviderMessageId, 255))
                    .foreign_key(
                        ForeignKey::create()
                            .from(DeliveryAttempt::Table, DeliveryAttempt::MessageId)
                            .to(OutboxMessage::Table, OutboxMessage::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_delivery_attempt_message")
                    .table(DeliveryAttempt::Table)
                    .col(DeliveryAttempt::MessageId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SendQuota::Table)
                    .col(string_len(SendQuota::Scope, 120))
                    .col(timestamp_with_time_zone(SendQuota::WindowStart))
                    .col(integer(SendQuota::Used).default(0))
                    .primary_key(
                        Index::create()
                            .col(SendQuota::Scope)
                            .col(SendQuota::WindowStart),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SendQuota::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(DeliveryAttempt::Table).to_owned())
            .await?;
        for (table, column) in [
            (
                OutboxMessage::Table.into_iden(),
                OutboxMessage::LastErrorClass.into_iden(),
            ),
            (
                OutboxMessage::Table.into_iden(),
                OutboxMessage::HtmlBody.into_iden(),
            ),
            (
                Registration::Table.into_iden(),
                Registration::Language.into_iden(),
            ),
        ] {
            manager
                .alter_table(Table::alter().table(table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Registration {
    Table,
    Language,
}

#[derive(DeriveIden)]
enum OutboxMessage {
    Table,
    Id,
    HtmlBody,
    LastErrorClass,
}

#[derive(DeriveIden)]
enum DeliveryAttempt {
    Table,
    Id,
    MessageId,
    AttemptedAt,
    Outcome,
    ErrorClass,
    Error,
    ProviderMessageId,
}

#[derive(DeriveIden)]
enum SendQuota {
    Table,
    Scope,
    WindowStart,
    Used,
}
