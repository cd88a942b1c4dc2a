use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "customer")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub username: String,
    #[sea_orm(unique)]
    pub email: Option<String>,
    pub email_verified: bool,
    /// Argon2id PHC string over the peppered MD5 hex.
    pub password_hash: String,
    pub host_id: Uuid,
    #[sea_orm(unique)]
    pub registration_id: Uuid,
    pub name: String,
    pub birth_date: Date,
    pub birth_place: String,
    pub gender: bool,
    pub country_id: String,
    pub source_id: Option<String>,
    pub account_group_id: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
