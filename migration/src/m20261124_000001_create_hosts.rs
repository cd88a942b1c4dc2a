use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Host::Table)
                    .col(uuid(Host::Id).primary_key())
                    .col(string_len_uniq(Host::Name, 100))
                    .col(string_len_uniq(Host::ClientId, 64))
                    .col(string_len(Host::SecretHash, 128))
                    .col(timestamp_with_time_zone(Host::CreatedAt))
                    .col(timestamp_with_time_zone_null(Host::DisabledAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AccessToken::Table)
                    .col(uuid(AccessToken::Id).primary_key())
                    .col(uuid(AccessToken::HostId))
                    .col(string_len_uniq(AccessToken::TokenHash, 64))
                    .col(timestamp_with_time_zone(AccessToken::CreatedAt))
                    .col(timestamp_with_time_zone(AccessToken::ExpiresAt))
                    .col(timestamp_with_time_zone_null(AccessToken::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(AccessToken::Table, AccessToken::HostId)
                            .to(Host::Table, Host::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AccountGroup::Table)
                    .col(string_len(AccountGroup::Id, 16).primary_key())
                    .col(string_len(AccountGroup::Name, 100))
                    .col(timestamp_with_time_zone(AccountGroup::CreatedAt))
                    .to_owned(),
            )
            .await?;
        // A fresh database has the account group the legacy sample uses.
        let seed = Query::insert()
            .into_table(AccountGroup::Table)
            .columns([
                AccountGroup::Id,
                AccountGroup::Name,
                AccountGroup::CreatedAt,
            ])
            .values_panic(["01".into(), "Default".into(), Expr::current_timestamp()])
            .to_owned();
        manager.exec_stmt(seed).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            AccessToken::Table.into_iden(),
            Host::Table.into_iden(),
            AccountGroup::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
pub enum Host {
    Table,
    Id,
    Name,
    ClientId,
    SecretHash,
    CreatedAt,
    DisabledAt,
}

#[derive(DeriveIden)]
enum AccessToken {
    Table,
    Id,
    HostId,
    TokenHash,
    CreatedAt,
    ExpiresAt,
    RevokedAt,
}

#[derive(DeriveIden)]
pub enum AccountGroup {
    Table,
    Id,
    Name,
    CreatedAt,
}
