//! Delivery receipts from SMS providers: a sent message becomes delivered,
//! or, when the provider could not deliver it, moves to the next provider
//! for its country with the same text, or ends undelivered or failed.
//! Receipts come again and out of order: one that would move a message
//! backwards (a `sent` after `delivered`) or that names a send the message
//! has moved on from changes nothing.
use anyhow::Context;
use chrono::{DateTime, Utc};
use entity::{
    delivery_attempt, outbox_message,
    states::{AttemptOutcome, ErrorClass, OutboxStatus},
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, sea_query::Expr,
};
use uuid::Uuid;

use super::dispatch::erase_bodies;
use crate::{
    domain::PhoneNumber,
    error::{CoreError, CoreResult},
    service::{retrying, webhooks, write},
    state::Core,
};

/// What a provider says became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptStatus {
    /// Handed to the network; nothing to record (the message is `sent`).
    Sent,
    Delivered,
    /// The network could not deliver it.
    Undelivered,
    /// The provider failed it before the network.
    Failed,
}

#[derive(Debug, Clone)]
pub struct Receipt {
    /// The configured provider name the receipt came to.
    pub provider: String,
    pub provider_message_id: String,
    pub status: ReceiptStatus,
    /// When the provider says it happened, if it says.
    pub at: Option<DateTime<Utc>>,
    /// The provider's error code or text, for the timeline.
    pub error: Option<String>,
}

/// What applying a receipt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptApplied {
    /// The message reached this final status.
    Final(OutboxStatus),
    /// Undelivered here; queued on this provider.
    FailedOver(String),
    /// A repeat, a step backwards, or about a send the message moved on from.
    Unchanged,
}

pub async fn apply_receipt(core: &Core, receipt: &Receipt) -> CoreResult<ReceiptApplied> {
    let applied = retrying(core, || apply_once(core, receipt)).await?;
    if matches!(applied, ReceiptApplied::FailedOver(_)) {
        core.outbox_signal.notify_one();
    }
    Ok(applied)
}

async fn apply_once(core: &Core, receipt: &Receipt) -> CoreResult<ReceiptApplied> {
    let now = core.clock.now();
    let txn = write::begin(core).await?;
    let message = message_sent_as(&txn, receipt).await?;
    let current_send = message.status == OutboxStatus::Sent
        && message.provider.as_deref() == Some(receipt.provider.as_str())
        && message.provider_message_id.as_deref() == Some(receipt.provider_message_id.as_str());
    let outcome = match receipt.status {
        ReceiptStatus::Sent => None,
        ReceiptStatus::Delivered => Some(AttemptOutcome::Delivered),
        ReceiptStatus::Undelivered => Some(AttemptOutcome::Undelivered),
        ReceiptStatus::Failed => Some(AttemptOutcome::ProviderFailed),
    };
    let Some(outcome) = outcome.filter(|_| current_send) else {
        return Ok(ReceiptApplied::Unchanged);
    };
    let country = PhoneNumber::from_stored(message.recipient.clone()).region();
    // Another provider can only carry it while its text is still kept.
    let next = match outcome {
        AttemptOutcome::Delivered => None,
        _ if message.body.is_none() => None,
        _ => core
            .settings
            .delivery
            .sms
            .next_provider(country.as_deref(), &receipt.provider),
    };
    let update = outbox_message::Entity::update_many()
        .filter(outbox_message::Column::Id.eq(message.id))
        .filter(outbox_message::Column::Status.eq(OutboxStatus::Sent))
        .filter(outbox_message::Column::ProviderMessageId.eq(&receipt.provider_message_id));
    let (update, applied, error) = match (&next, outcome) {
        (Some(next), _) => (
            update
                .col_expr(
                    outbox_message::Column::Status,
                    Expr::value(OutboxStatus::Pending),
                )
                .col_expr(outbox_message::Column::NextAttemptAt, Expr::value(now))
                .col_expr(outbox_message::Column::Provider, Expr::value(next.clone()))
                .col_expr(outbox_message::Column::ProviderFailures, Expr::value(0)),
            ReceiptApplied::FailedOver(next.clone()),
            Some(describe(receipt, Some(next))),
        ),
        (None, AttemptOutcome::Delivered) => (
            erase_bodies(update.col_expr(
                outbox_message::Column::Status,
                Expr::value(OutboxStatus::Delivered),
            )),
            ReceiptApplied::Final(OutboxStatus::Delivered),
            None,
        ),
        (None, _) => {
            let status = if outcome == AttemptOutcome::Undelivered {
                OutboxStatus::Undelivered
            } else {
                OutboxStatus::Failed
            };
            (
                erase_bodies(update.col_expr(outbox_message::Column::Status, Expr::value(status))),
                ReceiptApplied::Final(status),
                Some(describe(receipt, None)),
            )
        }
    };
    let updated = update
        .exec(&*txn)
        .await
        .context("Failed to apply a delivery receipt")?;
    if updated.rows_affected == 0 {
        write::rollback(txn).await?;
        return Ok(ReceiptApplied::Unchanged);
    }
    let receipt_row = |outcome, at, error| delivery_attempt::ActiveModel {
        id: Set(Uuid::now_v7()),
        message_id: Set(message.id),
        attempted_at: Set(at),
        outcome: Set(outcome),
        error_class: Set(None),
        error: Set(error),
        provider_message_id: Set(Some(receipt.provider_message_id.clone())),
        provider: Set(Some(receipt.provider.clone())),
    };
    let mut rows = Vec::with_capacity(2);
    // The message moves on to another provider, and its row will hold that
    // send: the one it moves on from becomes a row of its own, unless it is
    // one already.
    if next.is_some()
        && sent_row(&txn, receipt)
            .await?
            .is_none_or(|row| row.message_id != message.id)
    {
        rows.push(receipt_row(
            AttemptOutcome::Sent,
            message.sent_at.unwrap_or(now),
            None,
        ));
    }
    rows.push(receipt_row(outcome, now, error));
    delivery_attempt::Entity::insert_many(rows)
        .exec(&*txn)
        .await
        .context("Failed to record a delivery receipt")?;
    // The host hears of it in the same transaction (if it has an endpoint).
    match &applied {
        ReceiptApplied::Final(OutboxStatus::Delivered) => {
            webhooks::message_delivered(core, &txn, message.id, message.channel, now).await?;
        }
        ReceiptApplied::Final(_) => {
            let error = describe(receipt, None);
            webhooks::message_dead(
                core,
                &txn,
                message.id,
                message.channel,
                ErrorClass::Permanent,
                &error,
                now,
            )
            .await?;
        }
        ReceiptApplied::FailedOver(_) | ReceiptApplied::Unchanged => {}
    }
    write::commit(txn).await?;
    let latency = message.sent_at.map(|sent_at| {
        let at = receipt.at.unwrap_or(now);
        (at - sent_at).num_milliseconds().max(0) as f64 / 1000.0
    });
    core.metrics
        .sms_receipt(&receipt.provider, country.as_deref(), outcome, latency);
    Ok(applied)
}

/// The message whose send the receipt names (a provider's ids are only
/// unique to it): the one that holds it as its send, or one that moved on
/// from it (a row of the timeline since, as every send was before
/// migration `m20261207_000001`).
async fn message_sent_as(
    txn: &DatabaseTransaction,
    receipt: &Receipt,
) -> CoreResult<outbox_message::Model> {
    let holding = outbox_message::Entity::find()
        .filter(outbox_message::Column::Provider.eq(&receipt.provider))
        .filter(outbox_message::Column::ProviderMessageId.eq(&receipt.provider_message_id))
        .one(txn)
        .await
        .context("Failed to find the message a receipt names")?;
    if let Some(message) = holding {
        return Ok(message);
    }
    let moved_on = sent_row(txn, receipt)
        .await?
        .ok_or(CoreError::MessageNotFound)?;
    outbox_message::Entity::find_by_id(moved_on.message_id)
        .one(txn)
        .await
        .context("Failed to load the message a receipt names")?
        .ok_or(CoreError::MessageNotFound)
}

/// The send the receipt names as a timeline row: one a message moved on
/// from, or any sent before migration `m20261207_000001`.
async fn sent_row(
    txn: &DatabaseTransaction,
    receipt: &Receipt,
) -> CoreResult<Option<delivery_attempt::Model>> {
    let row = delivery_attempt::Entity::find()
        .filter(delivery_attempt::Column::Provider.eq(&receipt.provider))
        .filter(delivery_attempt::Column::ProviderMessageId.eq(&receipt.provider_message_id))
        .filter(delivery_attempt::Column::Outcome.eq(AttemptOutcome::Sent))
        .one(txn)
        .await
        .context("Failed to find the send a receipt names")?;
    Ok(row)
}

fn describe(receipt: &Receipt, next: Option<&str>) -> String {
    let what = match receipt.status {
        ReceiptStatus::Failed => "the provider failed it",
        _ => "the network could not deliver it",
    };
    let mut text = match &receipt.error {
        Some(error) => format!("{what} ({error})"),
        None => what.to_owned(),
    };
    if let Some(next) = next {
        text.push_str(&format!("; moving to SMS provider {next}"));
    }
    text
}
