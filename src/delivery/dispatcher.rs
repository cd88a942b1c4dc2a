use std::time::Duration as StdDuration;

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use entity::{delivery_attempt, outbox_message};
use rand::Rng;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait, sea_query::Expr,
};
use uuid::Uuid;

use super::transport::{EmailSender, OutgoingMessage, SendError, SmsTransport};
use crate::{
    metrics::Channel,
    service::messages::{OUTBOX_DEAD, OUTBOX_PENDING, OUTBOX_SENT},
    state::Core,
};

/// How long a claimed message stays reserved for one dispatcher; if that
/// instance dies mid-send another picks the message up afterwards.
const LEASE: Duration = Duration::seconds(60);

pub struct Dispatcher {
    core: Core,
    email: EmailSender,
    sms: SmsTransport,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DispatchReport {
    pub sent: usize,
    pub failed: usize,
    pub dead: usize,
}

impl DispatchReport {
    fn handled(&self) -> usize {
        self.sent + self.failed + self.dead
    }
}

impl Dispatcher {
    pub fn new(core: Core, email: EmailSender, sms: SmsTransport) -> Self {
        Self { core, email, sms }
    }

    /// Runs until the future is dropped: drains due messages, then sleeps
    /// until the poll interval passes or a transaction signals new messages.
    pub async fn run(self) {
        let poll = StdDuration::from_millis(self.core.settings.delivery.poll_interval_ms);
        let batch = self.core.settings.delivery.batch_size as usize;
        let mut last_housekeeping = std::time::Instant::now();
        loop {
            if last_housekeeping.elapsed() > HOUSEKEEPING_INTERVAL {
                last_housekeeping = std::time::Instant::now();
                if let Err(error) = housekeeping(&self.core).await {
                    tracing::error!(error = ?error, "housekeeping failed");
                }
            }
            match self.dispatch_due().await {
                Ok(report) if report.handled() >= batch => continue,
                Ok(_) => {}
                Err(error) => tracing::error!(error = ?error, "outbox dispatch failed"),
            }
            tokio::select! {
                () = self.core.outbox_signal.notified() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// One pass over the due messages.
    pub async fn dispatch_due(&self) -> anyhow::Result<DispatchReport> {
        let now = self.core.clock.now();
        let candidates: Vec<Uuid> = outbox_message::Entity::find()
            .select_only()
            .column(outbox_message::Column::Id)
            .filter(outbox_message::Column::Status.eq(OUTBOX_PENDING))
            .filter(outbox_message::Column::NextAttemptAt.lte(now))
            .filter(lease_free(now))
            .order_by_asc(outbox_message::Column::NextAttemptAt)
            .limit(self.core.settings.delivery.batch_size)
            .into_tuple()
            .all(&self.core.db)
            .await
            .context("Failed to list due outbox messages")?;
        let mut report = DispatchReport::default();
        for id in candidates {
            if let Some(message) = self.claim(id, now).await? {
                self.deliver(message, &mut report).await?;
            }
        }
        Ok(report)
    }

    /// Takes the lease on one message. A conditional UPDATE instead of
    /// `SELECT ... FOR UPDATE SKIP LOCKED` works the same on SQLite,
    /// PostgreSQL and MySQL: of several instances, exactly one gets the row.
    async fn claim(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<outbox_message::Model>> {
        let claimed = outbox_message::Entity::update_many()
            .col_expr(outbox_message::Column::LeaseUntil, Expr::value(now + LEASE))
            .filter(outbox_message::Column::Id.eq(id))
            .filter(outbox_message::Column::Status.eq(OUTBOX_PENDING))
            .filter(lease_free(now))
            .exec(&self.core.db)
            .await
            .context("Failed to claim outbox message")?;
        if claimed.rows_affected == 0 {
            return Ok(None);
        }
        outbox_message::Entity::find_by_id(id)
            .one(&self.core.db)
            .await
            .context("Failed to load outbox message")
    }

    async fn deliver(
        &self,
        message: outbox_message::Model,
        report: &mut DispatchReport,
    ) -> anyhow::Result<()> {
        let outgoing = OutgoingMessage {
            id: message.id,
            recipient: &message.recipient,
            subject: message.subject.as_deref(),
            body: message.body.as_deref().unwrap_or_default(),
            html_body: message.html_body.as_deref(),
        };
        let channel = Channel::from_name(&message.channel);
        let result = match channel {
            Channel::Email => self.email.send(&outgoing).await,
            Channel::Sms => self.sms.send(&outgoing).await,
        };
        let now = self.core.clock.now();
        let attempts = message.attempts + 1;
        let max = i32::try_from(self.core.settings.delivery.max_attempts).unwrap_or(i32::MAX);
        let mut attempt = delivery_attempt::ActiveModel {
            id: Set(Uuid::now_v7()),
            message_id: Set(message.id),
            attempted_at: Set(now),
            outcome: Set(String::new()),
            error_class: Set(None),
            error: Set(None),
            provider_message_id: Set(None),
        };
        let update = outbox_message::Entity::update_many()
            .col_expr(outbox_message::Column::Attempts, Expr::value(attempts))
            .col_expr(
                outbox_message::Column::LeaseUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(outbox_message::Column::Id.eq(message.id));
        let update = match result {
            Ok(provider_id) => {
                report.sent += 1;
                self.core.metrics.sent(channel);
                tracing::info!(message = %message.id, channel = channel.name(), attempts, "message sent");
                attempt.outcome = Set(OUTBOX_SENT.to_owned());
                attempt.provider_message_id = Set(Some(provider_id.clone()));
                update
                    .col_expr(outbox_message::Column::Status, Expr::value(OUTBOX_SENT))
                    .col_expr(outbox_message::Column::SentAt, Expr::value(now))
                    .col_expr(
                        outbox_message::Column::ProviderMessageId,
                        Expr::value(provider_id),
                    )
                    // The bodies hold a live token or link: keep them no longer than needed.
                    .col_expr(
                        outbox_message::Column::Body,
                        Expr::value(Option::<String>::None),
                    )
                    .col_expr(
                        outbox_message::Column::HtmlBody,
                        Expr::value(Option::<String>::None),
                    )
            }
            Err(error) => {
                let dead = matches!(error, SendError::Permanent(_)) || attempts >= max;
                attempt.error_class = Set(Some(error.class().to_owned()));
                attempt.error = Set(Some(error.to_string()));
                let update = update
                    .col_expr(
                        outbox_message::Column::LastError,
                        Expr::value(error.to_string()),
                    )
                    .col_expr(
                        outbox_message::Column::LastErrorClass,
                        Expr::value(error.class()),
                    );
                if dead {
                    report.dead += 1;
                    self.core.metrics.dead(channel);
                    tracing::error!(message = %message.id, channel = channel.name(), attempts, class = error.class(), error = %error, "message dead-lettered");
                    attempt.outcome = Set(OUTBOX_DEAD.to_owned());
                    update.col_expr(outbox_message::Column::Status, Expr::value(OUTBOX_DEAD))
                } else {
                    report.failed += 1;
                    self.core.metrics.failed(channel);
                    tracing::warn!(message = %message.id, channel = channel.name(), attempts, class = error.class(), error = %error, "message send failed; will retry");
                    attempt.outcome = Set("failed".to_owned());
                    update.col_expr(
                        outbox_message::Column::NextAttemptAt,
                        Expr::value(now + backoff(attempts)),
                    )
                }
            }
        };
        let txn = self
            .core
            .db
            .begin()
            .await
            .context("Failed to begin transaction")?;
        update
            .exec(&txn)
            .await
            .context("Failed to record delivery result")?;
        delivery_attempt::Entity::insert(attempt)
            .exec(&txn)
            .await
            .context("Failed to record delivery attempt")?;
        txn.commit()
            .await
            .context("Failed to commit delivery result")?;
        Ok(())
    }
}

const HOUSEKEEPING_INTERVAL: StdDuration = StdDuration::from_secs(3600);

/// Drops expired idempotency keys and old quota windows.
async fn housekeeping(core: &Core) -> anyhow::Result<()> {
    let now = core.clock.now();
    let windows = crate::service::quotas::purge_old_windows(core, now).await?;
    let keys = entity::idempotency_record::Entity::delete_many()
        .filter(entity::idempotency_record::Column::CreatedAt.lt(now - Duration::hours(24)))
        .exec(&core.db)
        .await
        .context("Failed to purge idempotency records")?;
    tracing::info!(
        quota_windows = windows,
        idempotency_keys = keys.rows_affected,
        "housekeeping done"
    );
    Ok(())
}

fn lease_free(now: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(outbox_message::Column::LeaseUntil.is_null())
        .add(outbox_message::Column::LeaseUntil.lt(now))
}

/// Exponential backoff from 2 s, capped at 10 minutes, with jitter so that
/// many failed messages do not retry in lockstep.
pub fn backoff(attempts: i32) -> Duration {
    let exponent = u32::try_from(attempts.clamp(1, 10)).unwrap_or(1);
    let ceiling_ms = (2_000i64 << (exponent - 1)).min(600_000);
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
            let ceiling = (2_000i64 << (attempts.clamp(1, 10) - 1)).min(600_000);
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{attempts}: {delay}"
            );
        }
    }
}
