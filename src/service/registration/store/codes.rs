//! The SMS codes and completion links of registrations, stored as keyed
//! hashes: issued, superseded, used once.
use anyhow::Context;
use chrono::{DateTime, Utc};
use entity::{completion_link, sms_token};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryTrait,
    TryIntoModel, sea_query::Expr,
};
use uuid::Uuid;

use super::super::rows::code_from_row;
use crate::{
    domain::{IssuedCode, Registration, Rules, SmsCode},
    error::CoreResult,
    service::write::WriteTxn,
};

/// The row of a new SMS code, stored as its keyed hash (the digits never
/// are), for [`insert_codes`].
pub fn code_row(
    registration: &Registration,
    code: &SmsCode,
    code_hash: String,
    now: DateTime<Utc>,
    rules: &Rules,
) -> CoreResult<(sms_token::ActiveModel, IssuedCode)> {
    let attempt = i32::try_from(registration.sms.count).context("SMS count out of range")?;
    let row = sms_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        registration_id: Set(registration.id),
        attempt: Set(attempt),
        prefix: Set(code.prefix().to_owned()),
        code_hash: Set(code_hash),
        created_at: Set(now),
        expires_at: Set(now + rules.token_expiry),
        superseded_at: Set(None),
    };
    let model = row
        .clone()
        .try_into_model()
        .context("Failed to build the SMS token row")?;
    Ok((row, code_from_row(model)?))
}

/// Holds the codes' insert in `txn` (`WriteTxn::hold`).
pub fn insert_codes(txn: &WriteTxn, rows: Vec<sms_token::ActiveModel>) {
    if !rows.is_empty() {
        txn.hold(sms_token::Entity::insert_many(rows).into_query());
    }
}

/// The row of a new single-use completion link, for
/// [`insert_completion_links`].
pub fn completion_link_row(
    registration_id: Uuid,
    token_hash: String,
    now: DateTime<Utc>,
    rules: &Rules,
) -> completion_link::ActiveModel {
    completion_link::ActiveModel {
        id: Set(Uuid::now_v7()),
        registration_id: Set(registration_id),
        token_hash: Set(token_hash),
        created_at: Set(now),
        expires_at: Set(now + rules.link_expiry),
        used_at: Set(None),
        superseded_at: Set(None),
    }
}

/// Holds the links' insert in `txn` (`WriteTxn::hold`).
pub fn insert_completion_links(txn: &WriteTxn, rows: Vec<completion_link::ActiveModel>) {
    if !rows.is_empty() {
        txn.hold(completion_link::Entity::insert_many(rows).into_query());
    }
}

/// A resend makes every earlier code of the registration stale.
pub async fn supersede_codes(
    txn: &DatabaseTransaction,
    registration_id: Uuid,
    now: DateTime<Utc>,
) -> CoreResult<()> {
    sms_token::Entity::update_many()
        .col_expr(sms_token::Column::SupersededAt, Expr::value(now))
        .filter(sms_token::Column::RegistrationId.eq(registration_id))
        .filter(sms_token::Column::SupersededAt.is_null())
        .exec(txn)
        .await
        .context("Failed to supersede SMS tokens")?;
    Ok(())
}

/// A new email makes every earlier completion link of the registration stale.
pub async fn supersede_links(
    txn: &DatabaseTransaction,
    registration_id: Uuid,
    now: DateTime<Utc>,
) -> CoreResult<()> {
    completion_link::Entity::update_many()
        .col_expr(completion_link::Column::SupersededAt, Expr::value(now))
        .filter(completion_link::Column::RegistrationId.eq(registration_id))
        .filter(completion_link::Column::SupersededAt.is_null())
        .exec(txn)
        .await
        .context("Failed to supersede completion links")?;
    Ok(())
}

/// Uses the code up; false when another request already did.
pub async fn consume_code(
    txn: &DatabaseTransaction,
    code_id: Uuid,
    now: DateTime<Utc>,
) -> CoreResult<bool> {
    let consumed = sms_token::Entity::update_many()
        .col_expr(sms_token::Column::SupersededAt, Expr::value(now))
        .filter(sms_token::Column::Id.eq(code_id))
        .filter(sms_token::Column::SupersededAt.is_null())
        .exec(txn)
        .await
        .context("Failed to consume SMS token")?;
    Ok(consumed.rows_affected == 1)
}

pub async fn mark_link_used(
    txn: &DatabaseTransaction,
    link_id: Uuid,
    now: DateTime<Utc>,
) -> CoreResult<()> {
    completion_link::Entity::update_many()
        .col_expr(completion_link::Column::UsedAt, Expr::value(now))
        .filter(completion_link::Column::Id.eq(link_id))
        .exec(txn)
        .await
        .context("Failed to mark completion link used")?;
    Ok(())
}
