//! The core: one function per use case. GraphQL resolvers, REST handlers,
//! the CLI, the completion page and the delivery loop call these and
//! nothing below them.
pub mod account_groups;
pub mod completion;
pub mod health;
pub mod hosts;
pub mod idempotency;
pub mod keys;
pub mod outbox;
pub mod quotas;
pub mod registration;

use sea_orm::{DbErr, SqlErr};

use crate::{error::CoreResult, state::Core};

/// True when the database refused a row because a unique key already held
/// the value, the one constraint error the core turns into a domain error.
pub(crate) fn is_unique_violation(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// Drops expired idempotency keys and old quota windows; the delivery loop
/// calls this now and then.
pub async fn housekeeping(core: &Core) -> CoreResult<()> {
    let windows = quotas::purge_old_windows(core, core.clock.now()).await?;
    let keys = idempotency::purge_expired(core).await?;
    tracing::info!(
        quota_windows = windows,
        idempotency_keys = keys,
        "housekeeping done"
    );
    Ok(())
}
