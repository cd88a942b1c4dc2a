//! Operator views of the outbox: list messages, retry dead ones.
use anyhow::Context;
use chrono::{DateTime, Utc};
use entity::{delivery_attempt, outbox_message};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait, sea_query::Expr,
};
use uuid::Uuid;

use super::messages::{OUTBOX_DEAD, OUTBOX_PENDING};
use crate::{
    error::{AppError, AppResult},
    state::Core,
};

pub struct MessageSummary {
    pub id: Uuid,
    pub registration_id: Uuid,
    pub channel: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

pub async fn list(core: &Core, status: Option<&str>, limit: u64) -> AppResult<Vec<MessageSummary>> {
    let mut query = outbox_message::Entity::find()
        .order_by_desc(outbox_message::Column::Id)
        .limit(limit);
    if let Some(status) = status {
        query = query.filter(outbox_message::Column::Status.eq(status));
    }
    let rows = query.all(&core.db).await.context("Failed to list outbox")?;
    Ok(rows
        .into_iter()
        .map(|m| MessageSummary {
            id: m.id,
            registration_id: m.registration_id,
            channel: m.channel,
            status: m.status,
            attempts: m.attempts,
            last_error: m.last_error,
            created_at: m.created_at,
        })
        .collect())
}

/// Puts dead messages back in the queue with a fresh attempt budget; `None`
/// retries every dead message. Returns how many were requeued.
pub async fn retry_dead(core: &Core, id: Option<Uuid>) -> AppResult<u64> {
    let now = core.clock.now();
    let mut query = outbox_message::Entity::find()
        .select_only()
        .column(outbox_message::Column::Id)
        .filter(outbox_message::Column::Status.eq(OUTBOX_DEAD));
    if let Some(id) = id {
        query = query.filter(outbox_message::Column::Id.eq(id));
    }
    let ids: Vec<Uuid> = query
        .into_tuple()
        .all(&core.db)
        .await
        .context("Failed to find dead messages")?;
    if ids.is_empty() {
        return match id {
            Some(id) => Err(AppError::field(
                "id",
                "not_found",
                format!("no dead message with id {id}"),
            )),
            None => Ok(0),
        };
    }
    let txn = core
        .db
        .begin()
        .await
        .context("Failed to begin transaction")?;
    let requeued = outbox_message::Entity::update_many()
        .col_expr(outbox_message::Column::Status, Expr::value(OUTBOX_PENDING))
        .col_expr(outbox_message::Column::Attempts, Expr::value(0))
        .col_expr(outbox_message::Column::NextAttemptAt, Expr::value(now))
        .filter(outbox_message::Column::Id.is_in(ids.clone()))
        .filter(outbox_message::Column::Status.eq(OUTBOX_DEAD))
        .exec(&txn)
        .await
        .context("Failed to requeue dead messages")?;
    delivery_attempt::Entity::insert_many(ids.iter().map(|message_id| {
        delivery_attempt::ActiveModel {
            id: Set(Uuid::now_v7()),
            message_id: Set(*message_id),
            attempted_at: Set(now),
            outcome: Set("requeued".into()),
            error_class: Set(None),
            error: Set(None),
            provider_message_id: Set(None),
        }
    }))
    .exec(&txn)
    .await
    .context("Failed to record requeue")?;
    txn.commit().await.context("Failed to commit requeue")?;
    core.outbox_signal.notify_one();
    tracing::info!(count = requeued.rows_affected, "dead messages requeued");
    Ok(requeued.rows_affected)
}

/// Every message of each registration, oldest first, for DataLoaders.
pub async fn messages_by_registration(
    core: &Core,
    registration_ids: &[Uuid],
) -> AppResult<std::collections::HashMap<Uuid, Vec<outbox_message::Model>>> {
    let rows = outbox_message::Entity::find()
        .filter(outbox_message::Column::RegistrationId.is_in(registration_ids.iter().copied()))
        .order_by_asc(outbox_message::Column::Id)
        .all(&core.db)
        .await
        .context("Failed to load deliveries")?;
    let mut grouped: std::collections::HashMap<Uuid, Vec<outbox_message::Model>> =
        std::collections::HashMap::new();
    for row in rows {
        grouped.entry(row.registration_id).or_default().push(row);
    }
    Ok(grouped)
}

/// Every attempt of each message, in order, for DataLoaders.
pub async fn attempts_by_message(
    core: &Core,
    message_ids: &[Uuid],
) -> AppResult<std::collections::HashMap<Uuid, Vec<delivery_attempt::Model>>> {
    let rows = delivery_attempt::Entity::find()
        .filter(delivery_attempt::Column::MessageId.is_in(message_ids.iter().copied()))
        .order_by_asc(delivery_attempt::Column::Id)
        .all(&core.db)
        .await
        .context("Failed to load delivery attempts")?;
    let mut grouped: std::collections::HashMap<Uuid, Vec<delivery_attempt::Model>> =
        std::collections::HashMap::new();
    for row in rows {
        grouped.entry(row.message_id).or_default().push(row);
    }
    Ok(grouped)
}
