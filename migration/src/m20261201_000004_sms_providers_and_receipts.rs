//! Several SMS providers and their delivery receipts: which provider carries
//! a message (and carried each attempt), its transient failures there, and
//! an index to find the attempt a receipt's provider message id names.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one at a time.
        for column in [
            string_len_null(OutboxMessage::Provider, 32),
            integer(OutboxMessage::ProviderFailures)
                .default(0)
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(OutboxMessage::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(DeliveryAttempt::Table)
                    .add_column(string_len_null(DeliveryAttempt::Provider, 32))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_attempt_provider_message")
                    .table(DeliveryAttempt::Table)
                    .col(DeliveryAttempt::ProviderMessageId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_attempt_provider_message")
                    .table(DeliveryAttempt::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(DeliveryAttempt::Table)
                    .drop_column(DeliveryAttempt::Provider)
                    .to_owned(),
            )
            .await?;
        for column in [OutboxMessage::Provider, OutboxMessage::ProviderFailures] {
            manager
                .alter_table(
                    Table::alter()
                        .table(OutboxMessage::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum OutboxMessage {
    Table,
    Provider,
    ProviderFailures,
}

#[derive(DeriveIden)]
enum DeliveryAttempt {
    Table,
    Provider,
    ProviderMessageId,
}
