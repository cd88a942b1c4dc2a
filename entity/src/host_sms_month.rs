use sea_orm::entity::prelude::*;

/// The SMS queued for one host in one calendar month (UTC), counted against
/// its monthly budget, and when the host was warned it had used 80 % of it.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "host_sms_month")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub host_id: Uuid,
    /// `2026-12`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub month: String,
    pub sms_queued: i32,
    /// When the `host.budget_warning` webhook was queued; none until then.
    pub warned_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
