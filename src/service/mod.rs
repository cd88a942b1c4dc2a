//! The core: one function per use case. GraphQL resolvers, REST handlers,
//! the CLI, the completion page and the delivery loop call these and
//! nothing below them.
pub mod account_groups;
pub mod checkpoints;
pub mod client;
pub mod completion;
pub mod health;
pub mod hosts;
pub mod idempotency;
pub mod keys;
pub mod outbox;
pub mod quotas;
pub mod registration;
pub mod request_limits;
pub mod retention;
pub mod spend;
pub mod webhooks;
pub mod write;

use sea_orm::{DbErr, SqlErr};

use crate::{
    error::{CoreError, CoreResult},
    state::Core,
};

/// True when the database refused a row because a unique key already held
/// the value, the one constraint error the core turns into a domain error.
pub(crate) fn is_unique_violation(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// Whether a write broke a foreign key: it named a row that is not there.
pub(crate) fn is_foreign_key_violation(error: &CoreError) -> bool {
    caused_by(error, |cause| {
        cause
            .downcast_ref::<DbErr>()
            .is_some_and(|e| matches!(e.sql_err(), Some(SqlErr::ForeignKeyConstraintViolation(_))))
    })
}

/// Whether an internal error has a cause (itself included) for which
/// `test` holds.
fn caused_by(error: &CoreError, test: impl Fn(&(dyn std::error::Error + 'static)) -> bool) -> bool {
    match error {
        CoreError::Internal(error) => error.chain().any(test),
        _ => false,
    }
}

/// A unique key this transaction needed was taken by a concurrent one
/// (another instance's register of the same phone: one pending
/// registration per host and phone). Run again whole, the transaction sees
/// the other's row and decides on it as on any earlier one.
#[derive(Debug, thiserror::Error)]
#[error("a concurrent transaction took a unique key first")]
pub(crate) struct KeyTakenConcurrently(#[source] pub DbErr);

/// Whether the database gave up a transaction because it lost a race to a
/// concurrent one (deadlock, serialization failure, SQLite busy, a unique
/// key taken meanwhile): running the whole transaction again is the answer.
pub(crate) fn is_lost_race(error: &CoreError) -> bool {
    caused_by(error, |cause| {
        cause
            .downcast_ref::<DbErr>()
            .is_some_and(crate::db::lost_race)
            || cause.is::<crate::db::TransactionEndedByCluster>()
            || cause.is::<KeyTakenConcurrently>()
    })
}

/// Runs a transaction, and runs it whole again when it lost a race to a
/// concurrent one (a deadlock, a serialization failure, SQLite busy, a
/// Galera certification conflict), up to `ATTEMPTS` times with jittered
/// exponential pauses; each rerun is counted in the metrics. A hot row on a
/// cluster (the global quota counter) can need several rounds. When every
/// attempt lost, the caller is told to retry shortly (503), not that
/// something broke.
pub(crate) async fn retrying<T, F, Fut>(core: &Core, mut transaction: F) -> CoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = CoreResult<T>>,
{
    const ATTEMPTS: u32 = 12;
    const LONGEST_PAUSE_MS: u64 = 500;
    let mut attempt = 1;
    loop {
        match transaction().await {
            Err(error) if is_lost_race(&error) => {
                if attempt == ATTEMPTS {
                    tracing::warn!(attempts = ATTEMPTS, error = %error, "transaction lost every race");
                    return Err(CoreError::ServerBusy {
                        retry_after_seconds: 1,
                    });
                }
                tracing::debug!(attempt, "transaction lost a race; running it again");
                core.metrics.transaction_retried();
                let ceiling = (5u64 << attempt.min(10)).min(LONGEST_PAUSE_MS);
                let pause = rand::random::<u64>() % ceiling + 1;
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}
