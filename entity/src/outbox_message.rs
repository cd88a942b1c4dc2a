use sea_orm::entity::prelude::*;

use crate::states::{Channel, ErrorClass, OutboxStatus};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox_message")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub registration_id: Uuid,
    pub channel: Channel,
    pub recipient: String,
    pub subject: Option<String>,
    /// Cleared once sent: it carries the secret token or link.
    #[sea_orm(column_type = "Text", nullable)]
    pub body: Option<String>,
    pub status: OutboxStatus,
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
    /// Of the last failed attempt.
    pub last_error_class: Option<ErrorClass>,
    /// Names the dispatcher holding the lease; only it records the result.
    pub lease_token: Option<Uuid>,
    /// The SMS provider (its configured name) carrying the current or last
    /// attempt; receipts are matched on it and `provider_message_id`.
    pub provider: Option<String>,
    /// Transient failures on `provider` since the message moved to it.
    pub provider_failures: i32,
    /// The SMS recipient's country (ISO 3166-1 alpha-2), for a host's send
    /// statistics; none for email and webhooks and for SMS queued before it
    /// was recorded.
    pub country: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
