use sea_orm::entity::prelude::*;

use crate::states::{AttemptOutcome, ErrorClass};

/// One try at sending an outbox message: the delivery timeline.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "delivery_attempt")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub message_id: Uuid,
    pub attempted_at: DateTimeUtc,
    pub outcome: AttemptOutcome,
    /// Set for failures.
    pub error_class: Option<ErrorClass>,
    #[sea_orm(column_type = "Text", nullable)]
    pub error: Option<String>,
    pub provider_message_id: Option<String>,
    /// The SMS provider that carried this attempt or sent this receipt.
    pub provider: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
