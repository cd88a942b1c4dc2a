//! Per-host SMS autofill: the WebOTP domain and the Android app hash.
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one at a time.
        for column in [
            string_len_null(Host::WebotpDomain, 253),
            string_len_null(Host::AndroidAppHash, 11),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Host::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Host::WebotpDomain, Host::AndroidAppHash] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Host::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Host {
    Table,
    WebotpDomain,
    AndroidAppHash,
}
