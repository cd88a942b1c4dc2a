//! Reads: a host's registrations, the current code, who holds a username or
//! email, and the batch loads behind the GraphQL DataLoaders.
use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use entity::{account_group, customer, phone_guard, registration, sms_token, states};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityName, EntityTrait, IdenStatic, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement,
};
use uuid::Uuid;

use super::{
    rows::{code_from_row, registration_from_row},
    views::CustomerSummary,
};
use crate::{
    domain::{IssuedCode, PhoneNumber, Registration, registration::ensure_phone_not_locked},
    error::{CoreError, CoreResult},
    service::{account_groups::AccountGroup, hosts::AuthenticatedHost, webhooks},
    state::Core,
};

fn latest_for_phone_query(
    host: &AuthenticatedHost,
    phone: &PhoneNumber,
) -> sea_orm::Select<registration::Entity> {
    registration::Entity::find()
        .filter(registration::Column::HostId.eq(host.id))
        .filter(registration::Column::Phone.eq(phone.as_str()))
        .filter(registration::Column::Status.ne(states::RegistrationStatus::Superseded))
        .order_by_desc(registration::Column::Id)
}

pub async fn current_code(
    db: &impl ConnectionTrait,
    registration_id: Uuid,
) -> CoreResult<IssuedCode> {
    let row = sms_token::Entity::find()
        .filter(sms_token::Column::RegistrationId.eq(registration_id))
        .order_by_desc(sms_token::Column::Attempt)
        .one(db)
        .await
        .context("Failed to load SMS token")?
        .ok_or_else(|| anyhow::anyhow!("registration {registration_id} has no SMS token"))?;
    code_from_row(row)
}

/// Whether the hash belongs to any SMS of this host's registrations for the
/// phone: the customer typed an old SMS, not a guess.
pub async fn is_earlier_code(
    db: &impl ConnectionTrait,
    host: &AuthenticatedHost,
    phone: &PhoneNumber,
    code_hashes: &[String],
) -> CoreResult<bool> {
    let registrations: Vec<Uuid> = registration::Entity::find()
        .select_only()
        .column(registration::Column::Id)
        .filter(registration::Column::HostId.eq(host.id))
        .filter(registration::Column::Phone.eq(phone.as_str()))
        .into_tuple()
        .all(db)
        .await
        .context("Failed to list registrations of phone")?;
    let matches = sms_token::Entity::find()
        .filter(sms_token::Column::RegistrationId.is_in(registrations))
        .filter(sms_token::Column::CodeHash.is_in(code_hashes.iter().cloned()))
        .count(db)
        .await
        .context("Failed to look up earlier SMS tokens")?;
    Ok(matches > 0)
}

/// What confirm and resend read before their transactions.
#[derive(Debug)]
pub struct LatestForPhone {
    /// The host's latest registration for the phone that was not replaced.
    pub registration: Option<Registration>,
    /// Until when the phone is refused to the host, if it is.
    pub phone_locked_until: Option<DateTime<Utc>>,
    /// Wrong codes in a row counted against the phone, which completing
    /// clears.
    pub phone_failures: i32,
    /// Where the host's webhook events go, if it has an enabled endpoint.
    pub webhook_url: Option<String>,
}

impl LatestForPhone {
    /// The registration, unless the phone is locked (told first) or there
    /// is none.
    pub fn unlocked(&self, now: DateTime<Utc>) -> CoreResult<Registration> {
        ensure_phone_not_locked(self.phone_locked_until, now)?;
        self.registration
            .clone()
            .ok_or(CoreError::RegistrationNotFound)
    }
}

/// The host's latest registration for the phone that was not replaced,
/// with the phone's guard and the host's webhook endpoint as scalar
/// subqueries beside it: one round trip where a confirm made three (the
/// guard, the registration and, inside its transaction, the endpoint),
/// since a confirm's statements are the part of its CPU that is not the
/// hash (docs/PERFORMANCE.md, session 22). Without a registration there is
/// no row to carry the guard, which is then read on its own: a locked phone
/// is refused as locked either way.
pub async fn latest_for_phone(
    core: &Core,
    host: &AuthenticatedHost,
    phone: &PhoneNumber,
) -> CoreResult<LatestForPhone> {
    use sea_orm::{
        FromQueryResult, QueryTrait,
        sea_query::{Expr, Query, SelectStatement},
    };
    let scalar = |query: &mut SelectStatement| Expr::SubQuery(None, Box::new(query.take().into()));
    let guard = |column: phone_guard::Column| {
        Query::select()
            .column(column)
            .from(phone_guard::Entity)
            .and_where(phone_guard::Column::HostId.eq(host.id))
            .and_where(phone_guard::Column::Phone.eq(phone.as_str()))
            .to_owned()
    };
    let query = latest_for_phone_query(host, phone)
        .expr_as(
            scalar(&mut guard(phone_guard::Column::LockedUntil)),
            "guard_locked_until",
        )
        .expr_as(
            scalar(&mut guard(phone_guard::Column::ConsecutiveFailures)),
            "guard_failures",
        )
        .expr_as(
            scalar(&mut webhooks::enabled_endpoint_url(host.id)),
            "webhook_url",
        )
        .limit(1);
    let backend = core.db.get_database_backend();
    let Some(row) = core
        .db
        .query_one_raw(query.build(backend))
        .await
        .context("Failed to look up registration")?
    else {
        return Ok(LatestForPhone {
            registration: None,
            phone_locked_until: phone_locked_until(core, host.id, phone).await?,
            phone_failures: 0,
            webhook_url: None,
        });
    };
    let read = |column: &str| format!("Failed to read {column} beside the registration");
    let registration = registration::Model::from_query_result(&row, "")
        .context("Failed to read the registration to confirm")?;
    Ok(LatestForPhone {
        registration: Some(registration_from_row(registration)?),
        phone_locked_until: row
            .try_get("", "guard_locked_until")
            .with_context(|| read("guard_locked_until"))?,
        phone_failures: row
            .try_get::<Option<i32>>("", "guard_failures")
            .with_context(|| read("guard_failures"))?
            .unwrap_or(0),
        webhook_url: row
            .try_get("", "webhook_url")
            .with_context(|| read("webhook_url"))?,
    })
}

/// Until when the phone is refused to the host after a run of wrong codes,
/// if at all.
pub async fn phone_locked_until(
    core: &Core,
    host_id: Uuid,
    phone: &PhoneNumber,
) -> CoreResult<Option<DateTime<Utc>>> {
    let guard = phone_guard::Entity::find_by_id((host_id, phone.as_str().to_owned()))
        .one(&core.db)
        .await
        .context("Failed to look up phone guard")?;
    Ok(guard.and_then(|g| g.locked_until))
}

pub async fn username_taken(core: &Core, username: &str) -> CoreResult<bool> {
    Ok(customer_with(core, customer::Column::Username, username)
        .await
        .context("Failed to look up customer by username")?)
}

pub async fn email_taken(core: &Core, email: &str) -> CoreResult<bool> {
    Ok(customer_with(core, customer::Column::Email, email)
        .await
        .context("Failed to look up customer by email")?)
}

/// Whether a customer has `value` in the uniquely indexed `column`: one
/// row of the index, nothing read from the table. The statement is written
/// out rather than built: building it through the query builder was about a
/// tenth of a verify's CPU, for SQL that never changes.
async fn customer_with(
    core: &Core,
    column: customer::Column,
    value: &str,
) -> Result<bool, sea_orm::DbErr> {
    let backend = core.db.get_database_backend();
    let placeholder = match backend {
        DbBackend::Postgres => "$1",
        _ => "?",
    };
    let sql = format!(
        "SELECT 1 FROM {} WHERE {} = {placeholder} LIMIT 1",
        customer::Entity.table_name(),
        column.as_str()
    );
    let lookup = Statement::from_sql_and_values(backend, sql, [value.into()]);
    Ok(core.lookups.query_one(lookup).await?.is_some())
}

pub async fn find_registration(
    core: &Core,
    host: &AuthenticatedHost,
    id: Uuid,
) -> CoreResult<Option<Registration>> {
    let found = registration::Entity::find_by_id(id)
        .filter(registration::Column::HostId.eq(host.id))
        .one(&core.db)
        .await
        .context("Failed to load registration")?;
    found.map(registration_from_row).transpose()
}

/// Newest first. `after` is the id of the last item of the previous page
/// (ids are time-ordered UUIDv7, so they sort like creation time). The flag
/// says whether more follow.
pub async fn list_registrations(
    core: &Core,
    host: &AuthenticatedHost,
    first: u64,
    after: Option<Uuid>,
) -> CoreResult<(Vec<Registration>, bool)> {
    let mut query = registration::Entity::find()
        .filter(registration::Column::HostId.eq(host.id))
        .order_by_desc(registration::Column::Id)
        .limit(first + 1);
    if let Some(after) = after {
        query = query.filter(registration::Column::Id.lt(after));
    }
    let mut rows = query
        .all(&core.db)
        .await
        .context("Failed to list registrations")?;
    let has_more = rows.len() as u64 > first;
    rows.truncate(usize::try_from(first).unwrap_or(usize::MAX));
    let registrations = rows
        .into_iter()
        .map(registration_from_row)
        .collect::<CoreResult<_>>()?;
    Ok((registrations, has_more))
}

/// The current SMS code of each registration.
pub async fn current_codes(
    core: &Core,
    registration_ids: &[Uuid],
) -> CoreResult<HashMap<Uuid, IssuedCode>> {
    let rows = sms_token::Entity::find()
        .filter(sms_token::Column::RegistrationId.is_in(registration_ids.iter().copied()))
        .order_by_asc(sms_token::Column::Attempt)
        .all(&core.db)
        .await
        .context("Failed to load SMS tokens")?;
    // Ascending order: the last insert per registration is the current one.
    rows.into_iter()
        .map(|row| Ok((row.registration_id, code_from_row(row)?)))
        .collect()
}

pub async fn account_groups(
    core: &Core,
    ids: &[String],
) -> CoreResult<HashMap<String, AccountGroup>> {
    let groups = account_group::Entity::find()
        .filter(account_group::Column::Id.is_in(ids.iter().cloned()))
        .all(&core.db)
        .await
        .context("Failed to load account groups")?;
    Ok(groups
        .into_iter()
        .map(|g| {
            (
                g.id.clone(),
                AccountGroup {
                    id: g.id,
                    name: g.name,
                },
            )
        })
        .collect())
}

pub async fn customers_by_registration(
    core: &Core,
    registration_ids: &[Uuid],
) -> CoreResult<HashMap<Uuid, CustomerSummary>> {
    let customers = customer::Entity::find()
        .filter(customer::Column::RegistrationId.is_in(registration_ids.iter().copied()))
        .all(&core.db)
        .await
        .context("Failed to load customers")?;
    Ok(customers
        .into_iter()
        .map(|c| {
            (
                c.registration_id,
                CustomerSummary {
                    id: c.id,
                    username: c.username,
                    email_verified: c.email_verified,
                    created_at: c.created_at,
                },
            )
        })
        .collect())
}
