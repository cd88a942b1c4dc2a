use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox_message")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub registration_id: Uuid,
    /// `sms` or `email`.
    pub channel: String,
    pub recipient: String,
    pub subject: Option<String>,
    /// Cleared once sent: it carries the secret token or link.
    #[sea_orm(column_type = "Text", nullable)]
    pub body: Option<String>,
    /// `pending`, `sent` or `dead`.
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTimeUtc,
    pub lease_until: Option<DateTimeUtc>,
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
    pub provider_message_id: Option<String>,
    pub created_at: DateTimeUtc,
    pub sent_at: Option<DateTimeUtc>,
    /// HTML alternative of an email; cleared once sent like `body`.
    #[sea_orm(column_type = "Text", nullable)]
    pub html_body: Option<String>,
    /// `transient` or `permanent`, of the last failed attempt.
    pub last_error_class: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
