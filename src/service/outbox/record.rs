//! Recording how each send went: the message's new state under its lease,
//! and for a send that failed its timeline entry, for every send that
//! finished together in one transaction. A send that went through is its
//! message's own `sent_at`, `provider` and `provider_message_id`, which the
//! timeline reads (`Delivery::timeline` in `history.rs`): no row of its
//! own, the commonest outcome by far and a seventh of a register's rows'
//! database work (docs/PERFORMANCE.md, session 48).
use std::collections::HashSet;

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use entity::{
    delivery_attempt, outbox_message,
    states::{AttemptOutcome, ErrorClass, OutboxStatus},
};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter,
    UpdateMany,
    sea_query::{Alias, Expr, ExprTrait, Func, IntoIden, Query, TableRef, ValueTuple},
};
use uuid::Uuid;

use super::dispatch::{
    Carrier, ClaimedMessage, Recorded, SendResult, erase_bodies, take_leases_on,
};
use crate::{
    error::CoreResult,
    service::{retrying, write},
    state::Core,
};

/// One finished send, as the dispatcher hands it over for recording.
#[derive(Clone, Copy)]
pub struct SendOutcome<'a> {
    pub message: &'a ClaimedMessage,
    pub carrier: Option<&'a Carrier>,
    pub result: &'a SendResult,
}

/// Stores the results of several sends and adds failures to the timeline, in
/// one transaction (one disk flush on SQLite, however many sends finished
/// together); the answers are in the order of `outcomes`. A failure that
/// fails the message over is due again at once on the next provider;
/// another is retried with backoff until `max_attempts`; a permanent one
/// with nowhere to go is dead at once. A result whose lease another
/// dispatcher took over changes nothing.
pub async fn record_results(
    core: &Core,
    outcomes: &[SendOutcome<'_>],
    now: DateTime<Utc>,
) -> CoreResult<Vec<Recorded>> {
    let (recorded, _) = record_results_and_claim(core, outcomes, now, &[]).await?;
    Ok(recorded)
}

/// [`record_results`], and in the same transaction the first half of a
/// claim of `due` (`take_leases`): its lease token, if it leased any.
/// On SQLite every transaction is a turn at the one writer that registers
/// queue for; a claim that rides on the recording's turn saves one
/// (docs/PERFORMANCE.md, session 46). The claimed messages are read
/// after the commit (`leased`), outside the turn.
pub async fn record_results_and_claim(
    core: &Core,
    outcomes: &[SendOutcome<'_>],
    now: DateTime<Utc>,
    due: &[Uuid],
) -> CoreResult<(Vec<Recorded>, Option<Uuid>)> {
    let planned: Vec<Planned> = outcomes
        .iter()
        .map(|outcome| plan(core, outcome, now))
        .collect();
    // On PostgreSQL and SQLite the sends that went through are recorded in
    // one statement (`record_sent_together`); on the database server each
    // statement is a round trip and most of a message's cost there
    // (docs/PERFORMANCE.md, session 17). MySQL has no UPDATE ... FROM a
    // list of values with RETURNING: one update each.
    let sent_together = core.db.get_database_backend() != DbBackend::MySql
        && planned.iter().filter(|p| p.sent.is_some()).count() > 1;
    // A result lost to a failed commit would leave the message leased and
    // sent again after the lease: the recording is run whole again instead.
    retrying(core, || async {
        let txn = write::begin_for_delivery(core).await?;
        let mut recorded = vec![Recorded::LeaseLost; planned.len()];
        let mut attempts = Vec::with_capacity(planned.len());
        let stored = if sent_together {
            let sent = planned
                .iter()
                .filter_map(|p| p.sent.as_ref())
                .collect::<Vec<_>>();
            record_sent_together(&txn, &sent, now).await?
        } else {
            HashSet::new()
        };
        for (i, (planned, outcome)) in planned.iter().zip(outcomes).enumerate() {
            if sent_together && planned.sent.is_some() {
                if stored.contains(&outcome.message.id) {
                    recorded[i] = planned.recorded;
                }
                continue;
            }
            let updated = planned
                .update
                .clone()
                .exec(&*txn)
                .await
                .context("Failed to record delivery result")?;
            if updated.rows_affected == 0 {
                continue;
            }
            recorded[i] = planned.recorded;
            attempts.extend(planned.failure.clone());
            // The host hears of a dead message in the same transaction.
            if let (Recorded::Dead, SendResult::Failed { class, error }) =
                (planned.recorded, outcome.result)
            {
                let message = outcome.message;
                crate::service::webhooks::message_dead(
                    core,
                    &txn,
                    message.id,
                    message.channel,
                    *class,
                    error,
                    now,
                )
                .await?;
            }
        }
        if !attempts.is_empty() {
            delivery_attempt::Entity::insert_many(attempts)
                .exec(&*txn)
                .await
                .context("Failed to record delivery attempts")?;
        }
        let lease_token = take_leases_on(core, &*txn, due).await?;
        write::commit(txn).await?;
        Ok((recorded, lease_token))
    })
    .await
}

/// A send that went through, as `record_sent_together` writes it: the
/// message's values that differ from one message to the next.
struct SentRow {
    id: Uuid,
    lease_token: Uuid,
    attempts: i32,
    provider_message_id: String,
    /// The SMS provider that carried it; `None` leaves the message's as it was.
    provider: Option<String>,
}

/// Records sends that went through with one `UPDATE ... FROM (VALUES ...)`,
/// each under its own lease, as `plan` would one by one: sent now, bodies
/// erased, the carrier's provider kept with its failures reset. Returns
/// the ids it recorded; a message missing there was cancelled or taken
/// over by another dispatcher during its send.
async fn record_sent_together(
    txn: &DatabaseTransaction,
    rows: &[&SentRow],
    now: DateTime<Utc>,
) -> CoreResult<HashSet<Uuid>> {
    use outbox_message::{Column, Entity};
    let list = Alias::new("sent").into_iden();
    // A list of values names its columns column1, column2, ... on both
    // PostgreSQL and SQLite.
    let listed = |n: usize| Expr::col((list.clone(), Alias::new(format!("column{n}"))));
    let values = rows
        .iter()
        .map(|row| {
            ValueTuple::Many(vec![
                row.id.into(),
                row.lease_token.into(),
                row.attempts.into(),
                row.provider_message_id.clone().into(),
                row.provider.clone().into(),
            ])
        })
        .collect();
    let mut update = Query::update();
    update
        .table(Entity)
        .value(Column::Status, OutboxStatus::Sent)
        .value(Column::SentAt, now)
        .value(Column::Attempts, listed(3))
        .value(Column::LeaseUntil, Option::<DateTime<Utc>>::None)
        .value(Column::LeaseToken, Option::<Uuid>::None)
        .value(Column::ProviderMessageId, listed(4))
        .value(
            Column::Provider,
            Func::coalesce([listed(5), Expr::col((Entity, Column::Provider))]),
        )
        .value(
            Column::ProviderFailures,
            Expr::case(
                listed(5).is_null(),
                Expr::col((Entity, Column::ProviderFailures)),
            )
            .finally(0),
        )
        .value(Column::Body, Option::<String>::None)
        .value(Column::HtmlBody, Option::<String>::None)
        .from(TableRef::ValuesList(values, list.clone()))
        .and_where(Expr::col((Entity, Column::Id)).eq(listed(1)))
        .and_where(Expr::col((Entity, Column::Status)).eq(OutboxStatus::Pending))
        .and_where(Expr::col((Entity, Column::LeaseToken)).eq(listed(2)))
        .returning_col(Column::Id);
    let stored = txn
        .query_all(&update)
        .await
        .context("Failed to record delivery results")?;
    stored
        .into_iter()
        .map(|row| {
            row.try_get::<Uuid>("", "id")
                .context("Failed to read a recorded message's id")
                .map_err(Into::into)
        })
        .collect()
}

/// What recording one send writes: the message's update (conditional on
/// its lease), a failure's timeline entry, and what that makes of the
/// message.
struct Planned {
    update: UpdateMany<outbox_message::Entity>,
    /// The same, for a send that went through, for `record_sent_together`.
    sent: Option<SentRow>,
    failure: Option<delivery_attempt::ActiveModel>,
    recorded: Recorded,
}

fn plan(core: &Core, outcome: &SendOutcome<'_>, now: DateTime<Utc>) -> Planned {
    let SendOutcome {
        message,
        carrier,
        result,
    } = *outcome;
    let attempts = message.attempts + 1;
    let max = i32::try_from(core.settings.delivery.max_attempts).unwrap_or(i32::MAX);
    let update = outbox_message::Entity::update_many()
        .col_expr(outbox_message::Column::Attempts, Expr::value(attempts))
        .col_expr(
            outbox_message::Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            outbox_message::Column::LeaseToken,
            Expr::value(Option::<Uuid>::None),
        )
        .filter(outbox_message::Column::Id.eq(message.id))
        .filter(outbox_message::Column::Status.eq(OutboxStatus::Pending))
        .filter(outbox_message::Column::LeaseToken.eq(message.lease_token));
    let failover_to = carrier.and_then(|c| c.failover_to.clone());
    let (update, recorded, failure) = match result {
        SendResult::Sent {
            provider_message_id,
        } => {
            let update = update
                .col_expr(
                    outbox_message::Column::Status,
                    Expr::value(OutboxStatus::Sent),
                )
                .col_expr(outbox_message::Column::SentAt, Expr::value(now))
                .col_expr(
                    outbox_message::Column::ProviderMessageId,
                    Expr::value(provider_message_id.clone()),
                );
            if carrier.is_some_and(|c| c.keep_body) {
                (update, Recorded::Sent, None)
            } else {
                (erase_bodies(update), Recorded::Sent, None)
            }
        }
        SendResult::Failed { class, error } => {
            let class = *class;
            let dead = attempts >= max || (class == ErrorClass::Permanent && failover_to.is_none());
            let failure = |outcome| delivery_attempt::ActiveModel {
                id: Set(Uuid::now_v7()),
                message_id: Set(message.id),
                attempted_at: Set(now),
                outcome: Set(outcome),
                error_class: Set(Some(class)),
                error: Set(Some(match &failover_to {
                    Some(next) if !dead => format!("{error}; moving to SMS provider {next}"),
                    _ => error.clone(),
                })),
                provider_message_id: Set(None),
                provider: Set(carrier.map(|c| c.provider.clone())),
            };
            let update = update
                .col_expr(
                    outbox_message::Column::LastError,
                    Expr::value(error.clone()),
                )
                .col_expr(outbox_message::Column::LastErrorClass, Expr::value(class));
            if dead {
                let update = erase_bodies(update.col_expr(
                    outbox_message::Column::Status,
                    Expr::value(OutboxStatus::Dead),
                ));
                (update, Recorded::Dead, Some(failure(AttemptOutcome::Dead)))
            } else if let Some(next) = &failover_to {
                let update = update
                    .col_expr(outbox_message::Column::NextAttemptAt, Expr::value(now))
                    .col_expr(outbox_message::Column::Provider, Expr::value(next.clone()))
                    .col_expr(outbox_message::Column::ProviderFailures, Expr::value(0));
                let failed = failure(AttemptOutcome::Failed);
                (update, Recorded::FailedOver, Some(failed))
            } else {
                let update = update.col_expr(
                    outbox_message::Column::NextAttemptAt,
                    Expr::value(now + backoff(attempts)),
                );
                let failed = failure(AttemptOutcome::Failed);
                (update, Recorded::Retrying, Some(failed))
            }
        }
    };
    // Which provider the message is on now: the next one after a failover,
    // else the one that carried this send.
    let update = match (carrier, recorded) {
        (_, Recorded::FailedOver) | (None, _) => update,
        (Some(carrier), _) => update
            .col_expr(
                outbox_message::Column::Provider,
                Expr::value(carrier.provider.clone()),
            )
            .col_expr(
                outbox_message::Column::ProviderFailures,
                Expr::value(if recorded == Recorded::Sent {
                    0
                } else {
                    carrier.failures_here
                }),
            ),
    };
    // Sent without a body to keep: what `record_sent_together` writes for
    // it is exactly this update.
    let sent = match result {
        SendResult::Sent {
            provider_message_id,
        } if recorded == Recorded::Sent && !carrier.is_some_and(|c| c.keep_body) => Some(SentRow {
            id: message.id,
            lease_token: message.lease_token,
            attempts,
            provider_message_id: provider_message_id.clone(),
            provider: carrier.map(|c| c.provider.clone()),
        }),
        _ => None,
    };
    Planned {
        update,
        sent,
        failure,
        recorded,
    }
}

/// Exponential backoff from 2 s, capped at 10 minutes, with jitter so that
/// many failed messages do not retry in lockstep.
pub fn backoff(attempts: i32) -> Duration {
    use rand::Rng;
    let exponent = u32::try_from(attempts.clamp(1, 10)).unwrap_or(1);
    let ceiling_ms = std::cmp::min(2_000i64 << (exponent - 1), 600_000);
    let jittered = rand::thread_rng().gen_range(ceiling_ms / 2..=ceiling_ms);
    Duration::milliseconds(jittered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempts in 1..20 {
            let delay = backoff(attempts).num_milliseconds();
            let ceiling = std::cmp::min(2_000i64 << (attempts.clamp(1, 10) - 1), 600_000);
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{attempts}: {delay}"
            );
        }
    }
}
