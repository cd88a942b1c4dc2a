use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261124_000002_create_registrations::Registration;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OutboxMessage::Table)
                    .col(uuid(OutboxMessage::Id).primary_key())
                    .col(uuid(OutboxMessage::RegistrationId))
                    .col(string_len(OutboxMessage::Channel, 8))
                    .col(string_len(OutboxMessage::Recipient, 254))
                    .col(string_len_null(OutboxMessage::Subject, 255))
                    .col(text_null(OutboxMessage::Body))
                    .col(string_len(OutboxMessage::Status, 16))
                    .col(integer(OutboxMessage::Attempts).default(0))
                    .col(timestamp_with_time_zone(OutboxMessage::NextAttemptAt))
                    .col(timestamp_with_time_zone_null(OutboxMessage::LeaseUntil))
                    .col(text_null(OutboxMessage::LastError))
                    .col(string_len_null(OutboxMessage::ProviderMessageId, 255))
                    .col(timestamp_with_time_zone(OutboxMessage::CreatedAt))
                    .col(timestamp_with_time_zone_null(OutboxMessage::SentAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(OutboxMessage::Table, OutboxMessage::RegistrationId)
                            .to(Registration::Table, Registration::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_outbox_due")
                    .table(OutboxMessage::Table)
                    .col(OutboxMessage::Status)
                    .col(OutboxMessage::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_outbox_registration")
                    .table(OutboxMessage::Table)
                    .col(OutboxMessage::RegistrationId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(IdempotencyRecord::Table)
                    .col(uuid(IdempotencyRecord::HostId))
                    .col(string_len(IdempotencyRecord::IdempotencyKey, 255))
                    .col(string_len(IdempotencyRecord::RequestFingerprint, 64))
                    .col(integer_null(IdempotencyRecord::ResponseStatus))
                    .col(text_null(IdempotencyRecord::ResponseBody))
                    .col(timestamp_with_time_zone(IdempotencyRecord::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(IdempotencyRecord::HostId)
                            .col(IdempotencyRecord::IdempotencyKey),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(IdempotencyRecord::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(OutboxMessage::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum OutboxMessage {
    Table,
    Id,
    RegistrationId,
    Channel,
    Recipient,
    Subject,
    Body,
    Status,
    Attempts,
    NextAttemptAt,
    LeaseUntil,
    LastError,
    ProviderMessageId,
    CreatedAt,
    SentAt,
}

#[derive(DeriveIden)]
enum IdempotencyRecord {
    Table,
    HostId,
    IdempotencyKey,
    RequestFingerprint,
    ResponseStatus,
    ResponseBody,
    CreatedAt,
}
