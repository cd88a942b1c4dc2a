use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "host")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub name: String,
    #[sea_orm(unique)]
    pub client_id: String,
    pub secret_hash: String,
    pub created_at: DateTimeUtc,
    pub disabled_at: Option<DateTimeUtc>,
    /// The WebOTP line's domain (`@domain #code`), if the host wants it.
    pub webotp_domain: Option<String>,
    /// Android's SMS Retriever app hash, if the host wants it.
    pub android_app_hash: Option<String>,
    /// SMS the host may have queued per calendar month (UTC); none: no cap.
    pub monthly_sms_budget: Option<i32>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
