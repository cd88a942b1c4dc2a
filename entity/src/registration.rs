use sea_orm::entity::prelude::*;

use crate::states::{Language, RegistrationStatus};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "registration")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub host_id: Uuid,
    pub phone: String,
    pub email: Option<String>,
    pub name: String,
    pub birth_date: Date,
    pub birth_place: String,
    pub gender: bool,
    pub country_id: String,
    pub source_id: Option<String>,
    pub account_group_id: String,
    pub status: RegistrationStatus,
    pub failed_attempts: i32,
    pub sms_sends: i32,
    pub email_sends: i32,
    pub last_sms_at: Option<DateTimeUtc>,
    pub last_email_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub completed_at: Option<DateTimeUtc>,
    /// Language of the customer's messages.
    pub language: Language,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
