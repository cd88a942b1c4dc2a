use sea_orm::entity::prelude::*;

/// A host's webhook endpoint; at most one per host.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_endpoint")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub host_id: Uuid,
    pub url: String,
    /// The `whsec_...` signing secret, sealed (`Keys::seal`, the host id as
    /// associated data): the service needs it back to sign.
    #[sea_orm(column_type = "Text")]
    pub secret: String,
    pub created_at: DateTimeUtc,
    /// Set while the endpoint gets no events.
    pub disabled_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
