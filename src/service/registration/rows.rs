//! Rows read back as domain types. Counters are never negative; a row that
//! says otherwise is corrupt and fails loudly instead of being guessed at.
use anyhow::Context;
use entity::{registration, sms_token};

use crate::{
    domain::{IssuedCode, PhoneNumber, Registration, Sends},
    error::CoreResult,
};

/// A row read back as the domain type. Counters are never negative; a row
/// that says otherwise is corrupt and fails loudly.
pub fn registration_from_row(row: registration::Model) -> CoreResult<Registration> {
    let count = |value: i32, name: &str| {
        u32::try_from(value)
            .with_context(|| format!("registration {} has a negative {name}", row.id))
    };
    Ok(Registration {
        id: row.id,
        host_id: row.host_id,
        phone: PhoneNumber::from_stored(row.phone.clone()),
        email: row.email.clone(),
        name: row.name.clone(),
        birth_date: row.birth_date,
        birth_place: row.birth_place.clone(),
        gender: row.gender,
        country_id: row.country_id.clone(),
        source_id: row.source_id.clone(),
        account_group_id: row.account_group_id.clone(),
        status: row.status,
        failed_attempts: count(row.failed_attempts, "failed_attempts")?,
        sms: Sends {
            count: count(row.sms_sends, "sms_sends")?,
            last_at: row.last_sms_at,
        },
        email_sends: Sends {
            count: count(row.email_sends, "email_sends")?,
            last_at: row.last_email_at,
        },
        language: row.language,
        created_at: row.created_at,
        completed_at: row.completed_at,
    })
}

pub fn code_from_row(row: sms_token::Model) -> CoreResult<IssuedCode> {
    Ok(IssuedCode {
        attempt: u32::try_from(row.attempt)
            .with_context(|| format!("SMS token {} has a negative attempt", row.id))?,
        id: row.id,
        registration_id: row.registration_id,
        prefix: row.prefix,
        code_hash: row.code_hash,
        created_at: row.created_at,
        expires_at: row.expires_at,
        superseded_at: row.superseded_at,
    })
}
