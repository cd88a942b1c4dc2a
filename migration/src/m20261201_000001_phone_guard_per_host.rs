//! The wrong-code lock on a phone becomes per host: one host's failures no
//! longer refuse the number to every other host. Existing counts and locks
//! carry over to each host that has registrations for the phone.
use sea_orm_migration::{prelude::*, schema::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(HostPhoneGuard::Table)
                    .if_not_exists()
                    .col(uuid(HostPhoneGuard::HostId))
                    .col(string_len(HostPhoneGuard::Phone, 20))
                    .col(integer(HostPhoneGuard::ConsecutiveFailures).default(0))
                    .col(timestamp_with_time_zone_null(HostPhoneGuard::LockedUntil))
                    .primary_key(
                        Index::create()
                            .col(HostPhoneGuard::HostId)
                            .col(HostPhoneGuard::Phone),
                    )
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        if manager.get_database_backend() == DbBackend::MySql {
            db.execute_unprepared(
                "ALTER TABLE `host_phone_guard` MODIFY `locked_until` DATETIME(6) NULL",
            )
            .await?;
        }
        // MySQL DDL is not transactional: a run cut short between these
        // steps must be able to run again, so each step checks its work.
        if manager.has_table("phone_guard").await? {
            db.execute_unprepared(
                "INSERT INTO host_phone_guard (host_id, phone, consecutive_failures, locked_until) \
                 SELECT DISTINCT r.host_id, g.phone, g.consecutive_failures, g.locked_until \
                 FROM phone_guard g JOIN registration r ON r.phone = g.phone \
                 WHERE NOT EXISTS (SELECT 1 FROM host_phone_guard h \
                 WHERE h.host_id = r.host_id AND h.phone = g.phone)",
            )
            .await?;
        }
        manager
            .drop_table(
                Table::drop()
                    .table(PhoneGuard::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PhoneGuard::Table)
                    .col(string_len(PhoneGuard::Phone, 20).primary_key())
                    .col(integer(PhoneGuard::ConsecutiveFailures).default(0))
                    .col(timestamp_with_time_zone_null(PhoneGuard::LockedUntil))
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO phone_guard (phone, consecutive_failures, locked_until) \
                 SELECT phone, MAX(consecutive_failures), MAX(locked_until) \
                 FROM host_phone_guard GROUP BY phone",
            )
            .await?;
        manager
            .drop_table(Table::drop().table(HostPhoneGuard::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum HostPhoneGuard {
    Table,
    HostId,
    Phone,
    ConsecutiveFailures,
    LockedUntil,
}

#[derive(DeriveIden)]
enum PhoneGuard {
    Table,
    Phone,
    ConsecutiveFailures,
    LockedUntil,
}
