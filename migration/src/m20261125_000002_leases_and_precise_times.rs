//! Leases that name their holder, and exact times on MySQL/MariaDB.
use sea_orm_migration::{prelude::*, schema::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Every time column: (table, column, nullable).
const TIME_COLUMNS: &[(&str, &str, bool)] = &[
    ("host", "created_at", false),
    ("host", "disabled_at", true),
    ("access_token", "created_at", false),
    ("access_token", "expires_at", false),
    ("access_token", "revoked_at", true),
    ("account_group", "created_at", false),
    ("registration", "last_sms_at", true),
    ("registration", "last_email_at", true),
    ("registration", "created_at", false),
    ("registration", "completed_at", true),
    ("sms_token", "created_at", false),
    ("sms_token", "expires_at", false),
    ("sms_token", "superseded_at", true),
    ("completion_link", "created_at", false),
    ("completion_link", "expires_at", false),
    ("completion_link", "used_at", true),
    ("completion_link", "superseded_at", true),
    ("customer", "created_at", false),
    ("phone_guard", "locked_until", true),
    ("outbox_message", "next_attempt_at", false),
    ("outbox_message", "lease_until", true),
    ("outbox_message", "created_at", false),
    ("outbox_message", "sent_at", true),
    ("idempotency_record", "created_at", false),
    ("delivery_attempt", "attempted_at", false),
    ("send_quota", "window_start", false),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // A claim names its holder, so only the holder records the result.
        manager
            .alter_table(
                Table::alter()
                    .table(OutboxMessage::Table)
                    .add_column(uuid_null(OutboxMessage::LeaseToken))
                    .to_owned(),
            )
            .await?;
        // An unanswered idempotency key is held only until this time; a
        // retry after it takes over instead of waiting out the retention.
        manager
            .alter_table(
                Table::alter()
                    .table(IdempotencyRecord::Table)
                    .add_column(timestamp_with_time_zone_null(
                        IdempotencyRecord::LockedUntil,
                    ))
                    .to_owned(),
            )
            .await?;
        // MySQL's TIMESTAMP keeps whole seconds and ends in 2038.
        if manager.get_database_backend() == DbBackend::MySql {
            let db = manager.get_connection();
            for (table, column, nullable) in TIME_COLUMNS {
                let null = if *nullable { "NULL" } else { "NOT NULL" };
                db.execute_unprepared(&format!(
                    "ALTER TABLE `{table}` MODIFY `{column}` DATETIME(6) {null}"
                ))
                .await?;
            }
            db.execute_unprepared(
                "ALTER TABLE `idempotency_record` MODIFY `locked_until` DATETIME(6) NULL",
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(IdempotencyRecord::Table)
                    .drop_column(IdempotencyRecord::LockedUntil)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(OutboxMessage::Table)
                    .drop_column(OutboxMessage::LeaseToken)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum OutboxMessage {
    Table,
    LeaseToken,
}

#[derive(DeriveIden)]
enum IdempotencyRecord {
    Table,
    LockedUntil,
}
