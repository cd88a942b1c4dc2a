use sea_orm::entity::prelude::*;

/// Sends counted in one fixed window for one scope (`sms:recipient:<hash>`,
/// `email:host:<id>`, `sms:global`), shared by every instance. A host's and
/// the global scopes are counted in rows of their own (`sms:global#3`),
/// each spending the allowance it was granted from the scope's row
/// (`service::quotas::allowances`).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "send_quota")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub scope: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub window_start: DateTimeUtc,
    /// Sends counted here.
    pub used: i32,
    /// Allowance: on a scope's row, how much of its limit it has granted
    /// to its counting rows; on a counting row, how much it was granted.
    /// Zero on the others.
    pub granted: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
