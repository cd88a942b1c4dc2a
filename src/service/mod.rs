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
pub mod retention;

use sea_orm::{DbErr, SqlErr};

/// True when the database refused a row because a unique key already held
/// the value, the one constraint error the core turns into a domain error.
pub(crate) fn is_unique_violation(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}
