use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261124_000001_create_hosts::{AccountGroup, Host};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Registration::Table)
                    .col(uuid(Registration::Id).primary_key())
                    .col(uuid(Registration::HostId))
                    .col(string_len(Registration::Phone, 20))
                    .col(string_len_null(Registration::Email, 254))
                    .col(string_len(Registration::Name, 100))
                    .col(date(Registration::BirthDate))
                    .col(string_len(Registration::BirthPlace, 100))
                    .col(boolean(Registration::Gender))
                    .col(string_len(Registration::CountryId, 2))
                    .col(string_len_null(Registration::SourceId, 32))
                    .col(string_len(Registration::AccountGroupId, 16))
                    .col(string_len(Registration::Status, 16))
                    .col(integer(Registration::FailedAttempts).default(0))
                    .col(integer(Registration::SmsSends).default(0))
                    .col(integer(Registration::EmailSends).default(0))
                    .col(timestamp_with_time_zone_null(Registration::LastSmsAt))
                    .col(timestamp_with_time_zone_null(Registration::LastEmailAt))
                    .col(timestamp_with_time_zone(Registration::CreatedAt))
                    .col(timestamp_with_time_zone_null(Registration::CompletedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Registration::Table, Registration::HostId)
                            .to(Host::Table, Host::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Registration::Table, Registration::AccountGroupId)
                            .to(AccountGroup::Table, AccountGroup::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_registration_phone_status")
                    .table(Registration::Table)
                    .col(Registration::Phone)
                    .col(Registration::Status)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_registration_host_created")
                    .table(Registration::Table)
                    .col(Registration::HostId)
                    .col(Registration::CreatedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SmsToken::Table)
                    .col(uuid(SmsToken::Id).primary_key())
                    .col(uuid(SmsToken::RegistrationId))
                    .col(integer(SmsToken::Attempt))
                    .col(string_len(SmsToken::Prefix, 3))
                    .col(string_len(SmsToken::CodeHash, 64))
                    .col(timestamp_with_time_zone(SmsToken::CreatedAt))
                    .col(timestamp_with_time_zone(SmsToken::ExpiresAt))
                    .col(timestamp_with_time_zone_null(SmsToken::SupersededAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(SmsToken::Table, SmsToken::RegistrationId)
                            .to(Registration::Table, Registration::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sms_token_registration")
                    .table(SmsToken::Table)
                    .col(SmsToken::RegistrationId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(CompletionLink::Table)
                    .col(uuid(CompletionLink::Id).primary_key())
                    .col(uuid(CompletionLink::RegistrationId))
                    .col(string_len_uniq(CompletionLink::TokenHash, 64))
                    .col(timestamp_with_time_zone(CompletionLink::CreatedAt))
                    .col(timestamp_with_time_zone(CompletionLink::ExpiresAt))
                    .col(timestamp_with_time_zone_null(CompletionLink::UsedAt))
                    .col(timestamp_with_time_zone_null(CompletionLink::SupersededAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(CompletionLink::Table, CompletionLink::RegistrationId)
                            .to(Registration::Table, Registration::Id),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Customer::Table)
                    .col(uuid(Customer::Id).primary_key())
                    .col(string_len_uniq(Customer::Username, 20))
                    .col(string_len_null(Customer::Email, 254).unique_key())
                    .col(boolean(Customer::EmailVerified).default(false))
                    .col(string_len(Customer::PasswordHash, 255))
                    .col(uuid(Customer::HostId))
                    .col(uuid_uniq(Customer::RegistrationId))
                    .col(string_len(Customer::Name, 100))
                    .col(date(Customer::BirthDate))
                    .col(string_len(Customer::BirthPlace, 100))
                    .col(boolean(Customer::Gender))
                    .col(string_len(Customer::CountryId, 2))
                    .col(string_len_null(Customer::SourceId, 32))
                    .col(string_len(Customer::AccountGroupId, 16))
                    .col(timestamp_with_time_zone(Customer::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Customer::Table, Customer::RegistrationId)
                            .to(Registration::Table, Registration::Id),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(PhoneGuard::Table)
                    .col(string_len(PhoneGuard::Phone, 20).primary_key())
                    .col(integer(PhoneGuard::ConsecutiveFailures).default(0))
                    .col(timestamp_with_time_zone_null(PhoneGuard::LockedUntil))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            PhoneGuard::Table.into_iden(),
            Customer::Table.into_iden(),
            CompletionLink::Table.into_iden(),
            SmsToken::Table.into_iden(),
            Registration::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
pub enum Registration {
    Table,
    Id,
    HostId,
    Phone,
    Email,
    Name,
    BirthDate,
    BirthPlace,
    Gender,
    CountryId,
    SourceId,
    AccountGroupId,
    Status,
    FailedAttempts,
    SmsSends,
    EmailSends,
    LastSmsAt,
    LastEmailAt,
    CreatedAt,
    CompletedAt,
}

#[derive(DeriveIden)]
enum SmsToken {
    Table,
    Id,
    RegistrationId,
    Attempt,
    Prefix,
    CodeHash,
    CreatedAt,
    ExpiresAt,
    SupersededAt,
}

#[derive(DeriveIden)]
enum CompletionLink {
    Table,
    Id,
    RegistrationId,
    TokenHash,
    CreatedAt,
    ExpiresAt,
    UsedAt,
    SupersededAt,
}

#[derive(DeriveIden)]
enum Customer {
    Table,
    Id,
    Username,
    Email,
    EmailVerified,
    PasswordHash,
    HostId,
    RegistrationId,
    Name,
    BirthDate,
    BirthPlace,
    Gender,
    CountryId,
    SourceId,
    AccountGroupId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum PhoneGuard {
    Table,
    Phone,
    ConsecutiveFailures,
    LockedUntil,
}
