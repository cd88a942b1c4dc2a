//! Signed webhooks to hosts: each host's endpoint (URL and sealed signing
//! secret) and, per webhook sent, what a host lists and replays. The
//! deliveries themselves are outbox messages of channel `webhook`
//! (`recipient` the URL, `body` the sealed payload); `channel` is 8
//! characters wide, enough for `webhook`.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WebhookEndpoint::Table)
                    .col(uuid(WebhookEndpoint::HostId).primary_key())
                    // The outbox recipient column is 254 wide: so is this.
                    .col(string_len(WebhookEndpoint::Url, 254))
                    .col(text(WebhookEndpoint::Secret))
                    .col(timestamp_with_time_zone(WebhookEndpoint::CreatedAt))
                    .col(timestamp_with_time_zone_null(WebhookEndpoint::DisabledAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookDelivery::Table)
                    .col(uuid(WebhookDelivery::MessageId).primary_key())
                    .col(uuid(WebhookDelivery::HostId))
                    .col(string_len(WebhookDelivery::WebhookId, 64))
                    .col(string_len(WebhookDelivery::EventType, 64))
                    .col(text(WebhookDelivery::Payload))
                    .col(timestamp_with_time_zone(WebhookDelivery::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_delivery_host")
                    .table(WebhookDelivery::Table)
                    .col(WebhookDelivery::HostId)
                    .col(WebhookDelivery::MessageId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(WebhookDelivery::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(WebhookEndpoint::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum WebhookEndpoint {
    Table,
    HostId,
    Url,
    Secret,
    CreatedAt,
    DisabledAt,
}

#[derive(DeriveIden)]
enum WebhookDelivery {
    Table,
    MessageId,
    HostId,
    WebhookId,
    EventType,
    Payload,
    CreatedAt,
}
