use sea_orm::entity::prelude::*;

/// One webhook queued for a host: the outbox message that carries it, and
/// what a host lists and replays.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_delivery")]
pub struct Model {
    /// The `outbox_message` carrying it.
    #[sea_orm(primary_key, auto_increment = false)]
    pub message_id: Uuid,
    pub host_id: Uuid,
    /// The `webhook-id` header: the same for a replay of the same event.
    pub webhook_id: String,
    /// `registration.completed`, ...
    pub event_type: String,
    /// The JSON payload, sealed (message id as associated data); kept after
    /// the outbox erases its copy, so that it can be replayed.
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
