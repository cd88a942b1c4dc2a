//! Allowances for the shared quota counters. The host's and the global
//! counters of a window were one row each, which every register and
//! resend updated: on PostgreSQL and MySQL a row stays locked until its
//! transaction commits, so concurrent transactions took turns at that row
//! through each other's commits. They are now counted in a few rows each
//! (`scope#N`, one per writer slot), and each such row spends an
//! allowance granted from the scope's own row (`scope`), whose `granted`
//! never exceeds the limit (`service::quotas::allowances`;
//! docs/PERFORMANCE.md, session 39).
//!
//! The counts already stored stay where they are: the scope's own row's
//! `used` is spent allowance that new instances subtract before granting
//! more. During a rolling deploy, instances still on the old version count
//! in the scope's own row without reading the allowances: for that window
//! the host's and the global quotas may let through up to twice their
//! limit. The per-recipient quotas are unaffected.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(SendQuota::Table)
                    .add_column(
                        ColumnDef::new(SendQuota::Granted)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Back to one row a scope: the spent allowances of its rows are
        // its count.
        let db = manager.get_connection();
        let rows = db
            .query_all_raw(sea_orm::Statement::from_string(
                manager.get_database_backend(),
                "SELECT scope, window_start, used FROM send_quota WHERE scope LIKE '%#%'",
            ))
            .await?;
        for row in rows {
            let scope: String = row.try_get("", "scope")?;
            let window_start: sea_orm::prelude::DateTimeUtc = row.try_get("", "window_start")?;
            let used: i32 = row.try_get("", "used")?;
            let Some((base, _)) = scope.rsplit_once('#') else {
                continue;
            };
            let base = base.to_owned();
            let add = Query::update()
                .table(SendQuota::Table)
                .value(SendQuota::Used, Expr::col(SendQuota::Used).add(used))
                .and_where(Expr::col(SendQuota::Scope).eq(base))
                .and_where(Expr::col(SendQuota::WindowStart).eq(window_start))
                .to_owned();
            db.execute(&add).await?;
            let remove = Query::delete()
                .from_table(SendQuota::Table)
                .and_where(Expr::col(SendQuota::Scope).eq(scope))
                .and_where(Expr::col(SendQuota::WindowStart).eq(window_start))
                .to_owned();
            db.execute(&remove).await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(SendQuota::Table)
                    .drop_column(SendQuota::Granted)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum SendQuota {
    Table,
    Used,
    Granted,
    Scope,
    WindowStart,
}
