//! Wrong codes, counted exactly: the attempts a registration has left and
//! the run of failures that locks a phone for its host.
use anyhow::Context;
use chrono::{DateTime, Utc};
use entity::{phone_guard, registration, states::RegistrationStatus};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait, OnConflict},
};
use uuid::Uuid;

use crate::{
    domain::{PhoneNumber, Rules},
    error::CoreResult,
};

/// A completed registration clears the phone's run of wrong codes.
pub async fn reset_phone_failures(
    txn: &DatabaseTransaction,
    host_id: Uuid,
    phone: &PhoneNumber,
) -> CoreResult<()> {
    phone_guard::Entity::update_many()
        .col_expr(phone_guard::Column::ConsecutiveFailures, Expr::value(0))
        .filter(phone_guard::Column::HostId.eq(host_id))
        .filter(phone_guard::Column::Phone.eq(phone.as_str()))
        .exec(txn)
        .await
        .context("Failed to reset phone guard")?;
    Ok(())
}

/// Takes one attempt at the code if the registration has one left: exactly
/// `max_wrong_codes` guesses get through however many arrive at once.
pub async fn take_attempt(
    txn: &DatabaseTransaction,
    registration_id: Uuid,
    rules: &Rules,
) -> CoreResult<bool> {
    let counted = registration::Entity::update_many()
        .col_expr(
            registration::Column::FailedAttempts,
            Expr::col(registration::Column::FailedAttempts).add(1),
        )
        .filter(registration::Column::Id.eq(registration_id))
        .filter(registration::Column::Status.eq(RegistrationStatus::Pending))
        .filter(registration::Column::FailedAttempts.lt(rules.max_wrong_codes))
        .exec(txn)
        .await
        .context("Failed to count wrong code")?;
    Ok(counted.rows_affected == 1)
}

/// Gives back the attempt [`take_attempt`] took, in the same
/// transaction, when the code was not a wrong guess.
pub async fn give_back_attempt(txn: &DatabaseTransaction, registration_id: Uuid) -> CoreResult<()> {
    registration::Entity::update_many()
        .col_expr(
            registration::Column::FailedAttempts,
            Expr::col(registration::Column::FailedAttempts).sub(1),
        )
        .filter(registration::Column::Id.eq(registration_id))
        .exec(txn)
        .await
        .context("Failed to give back an attempt")?;
    Ok(())
}

/// Counts a wrong code against the phone, across registrations, and locks
/// the number once the run reaches the threshold. True when this locked it.
pub async fn count_phone_failure(
    txn: &DatabaseTransaction,
    host_id: Uuid,
    phone: &PhoneNumber,
    now: DateTime<Utc>,
    rules: &Rules,
) -> CoreResult<bool> {
    phone_guard::Entity::insert(phone_guard::ActiveModel {
        host_id: Set(host_id),
        phone: Set(phone.as_str().to_owned()),
        consecutive_failures: Set(1),
        locked_until: Set(None),
    })
    .on_conflict(
        OnConflict::columns([phone_guard::Column::HostId, phone_guard::Column::Phone])
            .value(
                phone_guard::Column::ConsecutiveFailures,
                Expr::col((
                    phone_guard::Entity,
                    phone_guard::Column::ConsecutiveFailures,
                ))
                .add(1),
            )
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await
    .context("Failed to count wrong code for phone")?;
    let locked = phone_guard::Entity::update_many()
        .col_expr(
            phone_guard::Column::LockedUntil,
            Expr::value(now + rules.phone_lock),
        )
        .col_expr(phone_guard::Column::ConsecutiveFailures, Expr::value(0))
        .filter(phone_guard::Column::HostId.eq(host_id))
        .filter(phone_guard::Column::Phone.eq(phone.as_str()))
        .filter(phone_guard::Column::ConsecutiveFailures.gte(rules.phone_lock_threshold))
        .exec(txn)
        .await
        .context("Failed to lock phone")?;
    Ok(locked.rows_affected > 0)
}
