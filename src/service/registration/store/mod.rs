//! Writes of the registration lifecycle: inserts and the conditional
//! `UPDATE`s that keep every counter exact however many requests race.
//! Each conditional update returns whether it applied; the caller decides
//! what a lost race means, with [`Registration::lost_race`]. Here the
//! registrations and the customer; the codes and links in `codes`, the
//! counts of wrong codes in `attempts`.
mod attempts;
mod codes;

use anyhow::Context;
pub use attempts::{count_phone_failure, give_back_attempt, reset_phone_failures, take_attempt};
use chrono::{DateTime, Utc};
pub use codes::{
    code_row, completion_link_row, consume_code, insert_codes, insert_completion_links,
    mark_link_used, supersede_codes, supersede_links,
};
use entity::{
    customer, registration,
    states::{Channel, RegistrationStatus},
};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, EntityTrait,
    QueryFilter, QuerySelect, QueryTrait, TryIntoModel,
    sea_query::{
        Alias, Expr, ExprTrait, IntoIden, Query, SelectStatement, TableRef, UpdateStatement,
        ValueTuple,
    },
};
use uuid::Uuid;

use super::{input::NewRegistration, rows::registration_from_row};
use crate::{
    domain::{PhoneNumber, Registration, Rules},
    error::CoreResult,
    service::write::WriteTxn,
};

pub async fn reload(db: &impl ConnectionTrait, id: Uuid) -> CoreResult<Registration> {
    let row = registration::Entity::find_by_id(id)
        .one(db)
        .await
        .context("Failed to reload registration")?
        .ok_or_else(|| anyhow::anyhow!("registration {id} vanished"))?;
    registration_from_row(row)
}

/// The registrations of `targets`' (host, phone) pairs: per host, its
/// phones in one list. An OR of (host AND phone) pairs was planned as a
/// scan of the host's rows when statistics were out of date
/// (docs/PERFORMANCE.md, session 10). SQLite and MySQL look each phone up
/// on (host, phone); PostgreSQL joins [`pairs_list`] instead.
fn of_phones(targets: &[(Uuid, &PhoneNumber)]) -> Condition {
    let mut by_host: std::collections::BTreeMap<Uuid, Vec<&str>> = Default::default();
    for (host_id, phone) in targets {
        by_host.entry(*host_id).or_default().push(phone.as_str());
    }
    let mut any = Condition::any();
    for (host_id, phones) in by_host {
        any = any.add(
            Condition::all()
                .add(registration::Column::HostId.eq(host_id))
                .add(registration::Column::Phone.is_in(phones)),
        );
    }
    any
}

/// `targets` as a list of values for PostgreSQL to join the registrations
/// to, with the condition that joins them (a registration is one of the
/// pairs). With `host_id = $ AND phone IN (...)` it may search the host
/// alone and filter its rows for the phones: it costs both the same
/// whenever its statistics think the host has a row or two, which they do
/// of every host that began registering after they were taken, and of
/// every host in a table analysed while empty (session 25). A join to a
/// list of values leaves it no host to search by: each pair is looked up
/// on (host, phone), and the alternative, reading the whole table, is
/// costed by the table's real size.
fn pairs_list(targets: &[(Uuid, &PhoneNumber)]) -> (TableRef, Condition) {
    let rows = targets
        .iter()
        .map(|(host_id, phone)| ValueTuple::Two((*host_id).into(), phone.as_str().into()))
        .collect();
    let list = Alias::new("pairs").into_iden();
    // A list of values names its columns column1, column2, ...
    let paired = |column: registration::Column, n: usize| {
        Expr::col((registration::Entity, column))
            .eq(Expr::col((list.clone(), Alias::new(format!("column{n}")))))
    };
    let one_of_them = Condition::all()
        .add(paired(registration::Column::HostId, 1))
        .add(paired(registration::Column::Phone, 2));
    (TableRef::ValuesList(rows, list), one_of_them)
}

/// When each (host, phone) of `targets` last registered, read inside the
/// writing transaction: a register of the same phone written just before,
/// by a batch of this instance or by another instance, counts against the
/// cooldown although it was not there when the register was checked.
pub async fn last_registered(
    txn: &DatabaseTransaction,
    targets: &[(Uuid, &PhoneNumber)],
) -> CoreResult<std::collections::HashMap<(Uuid, String), DateTime<Utc>>> {
    let latest = txn
        .query_all(&last_registered_query(txn.get_database_backend(), targets))
        .await
        .context("Failed to read when the phones last registered")?;
    let mut last = std::collections::HashMap::new();
    for row in &latest {
        let (host_id, phone, at): (Uuid, String, Option<DateTime<Utc>>) = row
            .try_get_many_by_index()
            .context("Failed to read when a phone last registered")?;
        if let Some(at) = at {
            last.insert((host_id, phone), at);
        }
    }
    Ok(last)
}

/// The statement of `last_registered` on `backend`.
pub fn last_registered_query(
    backend: DbBackend,
    targets: &[(Uuid, &PhoneNumber)],
) -> SelectStatement {
    use registration::{Column, Entity};
    let mut select = Query::select();
    select
        .column((Entity, Column::HostId))
        .column((Entity, Column::Phone))
        .expr_as(
            Expr::col((Entity, Column::CreatedAt)).max(),
            Alias::new("last_at"),
        )
        .from(Entity)
        .group_by_col((Entity, Column::HostId))
        .group_by_col((Entity, Column::Phone));
    if backend == DbBackend::Postgres {
        let (list, one_of_them) = pairs_list(targets);
        select.from(list).cond_where(one_of_them);
    } else {
        select.cond_where(of_phones(targets));
    }
    select.take()
}

/// A new registration replaces the host's pending one for the phone; for
/// several registers written together, each (host, phone) of `targets`
/// (distinct pairs). Writing first takes the write lock at once, so
/// concurrent registers queue instead of failing on SQLite's read-to-write
/// upgrade. Returns the replaced registrations, whose queued messages are
/// now pointless.
pub async fn supersede_pending(
    txn: &DatabaseTransaction,
    targets: &[(Uuid, &PhoneNumber)],
) -> CoreResult<Vec<Uuid>> {
    let backend = txn.get_database_backend();
    let update = supersede_pending_query(backend, targets);
    if backend != DbBackend::MySql {
        // One round trip: the rows this statement replaced.
        let rows = txn
            .query_all(&update)
            .await
            .context("Failed to supersede earlier registrations")?;
        return rows
            .iter()
            .map(|row| {
                Ok(row
                    .try_get::<Uuid>("", "id")
                    .context("Failed to read a superseded registration")?)
            })
            .collect();
    }
    // MySQL has no RETURNING: every superseded registration of the phones,
    // which includes the ones just replaced (cancelling the messages of
    // older ones again changes nothing).
    txn.execute(&update)
        .await
        .context("Failed to supersede earlier registrations")?;
    let superseded = registration::Entity::find()
        .select_only()
        .column(registration::Column::Id)
        .filter(registration::Column::Status.eq(RegistrationStatus::Superseded))
        .filter(of_phones(targets))
        .into_tuple()
        .all(txn)
        .await
        .context("Failed to list superseded registrations")?;
    Ok(superseded)
}

/// The statement of `supersede_pending` on `backend`.
pub fn supersede_pending_query(
    backend: DbBackend,
    targets: &[(Uuid, &PhoneNumber)],
) -> UpdateStatement {
    use registration::{Column, Entity};
    let mut update = Query::update();
    update
        .table(Entity)
        .value(Column::Status, Expr::value(RegistrationStatus::Superseded))
        .and_where(Expr::col((Entity, Column::Status)).eq(RegistrationStatus::Pending));
    if backend == DbBackend::Postgres {
        let (list, one_of_them) = pairs_list(targets);
        update.from(list).cond_where(one_of_them);
    } else {
        update.cond_where(of_phones(targets));
    }
    // MySQL has no RETURNING (see `supersede_pending`).
    if backend != DbBackend::MySql {
        update.returning_col(Column::Id);
    }
    update.take()
}

/// Holds new pending registrations, each of its host and time, in one
/// insert in `txn` (`WriteTxn::hold`); the first SMS (and email) of each
/// counts as sent. The one key of a new row that can collide is the
/// phone's one pending registration (`idx_registration_one_pending`):
/// another instance wrote it after this transaction superseded the ones
/// it saw, a lost race (`write::new_rows_refused`).
pub fn insert_registrations(
    txn: &WriteTxn,
    applicants: Vec<(Uuid, NewRegistration, DateTime<Utc>)>,
) -> CoreResult<Vec<Registration>> {
    let mut rows = Vec::with_capacity(applicants.len());
    let mut registrations = Vec::with_capacity(applicants.len());
    for (host_id, applicant, now) in applicants {
        let has_email = applicant.email.is_some();
        let row = registration::ActiveModel {
            id: Set(Uuid::now_v7()),
            host_id: Set(host_id),
            phone: Set(applicant.phone.as_str().to_owned()),
            email: Set(applicant.email.map(|e| e.as_str().to_owned())),
            name: Set(applicant.name.into_inner()),
            birth_date: Set(applicant.birth_date.into_inner()),
            birth_place: Set(applicant.birth_place.into_inner()),
            gender: Set(applicant.gender),
            country_id: Set(applicant.country.as_str().to_owned()),
            source_id: Set(applicant.source_id.map(|s| s.into_inner())),
            account_group_id: Set(applicant.account_group.as_str().to_owned()),
            status: Set(RegistrationStatus::Pending),
            failed_attempts: Set(0),
            sms_sends: Set(1),
            email_sends: Set(i32::from(has_email)),
            last_sms_at: Set(Some(now)),
            last_email_at: Set(has_email.then_some(now)),
            created_at: Set(now),
            completed_at: Set(None),
            language: Set(applicant.language),
        };
        // Every column is set here, so the row is known without reading it
        // back (a second statement on MySQL).
        let model = row
            .clone()
            .try_into_model()
            .context("Failed to build the registration row")?;
        registrations.push(registration_from_row(model)?);
        rows.push(row);
    }
    txn.hold(registration::Entity::insert_many(rows).into_query());
    Ok(registrations)
}

/// Completes a pending, unlocked registration; false when it no longer is.
pub async fn complete(
    txn: &DatabaseTransaction,
    registration_id: Uuid,
    now: DateTime<Utc>,
    rules: &Rules,
) -> CoreResult<bool> {
    let completed = registration::Entity::update_many()
        .col_expr(
            registration::Column::Status,
            Expr::value(RegistrationStatus::Completed),
        )
        .col_expr(registration::Column::CompletedAt, Expr::value(now))
        .filter(registration::Column::Id.eq(registration_id))
        .filter(registration::Column::Status.eq(RegistrationStatus::Pending))
        .filter(registration::Column::FailedAttempts.lt(rules.max_wrong_codes))
        .exec(txn)
        .await
        .context("Failed to complete registration")?;
    Ok(completed.rows_affected == 1)
}

/// The customer a completed registration creates. A unique-key violation is
/// returned as is: the caller says which of username and email was taken.
pub async fn insert_customer(
    txn: &DatabaseTransaction,
    registration: &Registration,
    password_hash: String,
    email_verified: bool,
    now: DateTime<Utc>,
) -> Result<Uuid, DbErr> {
    let id = Uuid::now_v7();
    customer::Entity::insert(customer::ActiveModel {
        id: Set(id),
        username: Set(registration.phone.as_str().to_owned()),
        email: Set(registration.email.clone()),
        email_verified: Set(email_verified),
        password_hash: Set(password_hash),
        host_id: Set(registration.host_id),
        registration_id: Set(registration.id),
        name: Set(registration.name.clone()),
        birth_date: Set(registration.birth_date),
        birth_place: Set(registration.birth_place.clone()),
        gender: Set(registration.gender),
        country_id: Set(registration.country_id.clone()),
        source_id: Set(registration.source_id.clone()),
        account_group_id: Set(registration.account_group_id.clone()),
        created_at: Set(now),
    })
    .exec(txn)
    .await?;
    Ok(id)
}

/// Spends one send of the channel if the cap and the cooldown allow it, in
/// one conditional UPDATE so concurrent resends cannot both pass. The same
/// rule as [`Registration::ensure_may_send`], which explains a refusal.
pub async fn spend_send(
    txn: &DatabaseTransaction,
    registration_id: Uuid,
    channel: Channel,
    now: DateTime<Utc>,
    rules: &Rules,
) -> CoreResult<bool> {
    let (sends, last_at) = match channel {
        Channel::Sms => (
            registration::Column::SmsSends,
            registration::Column::LastSmsAt,
        ),
        Channel::Email => (
            registration::Column::EmailSends,
            registration::Column::LastEmailAt,
        ),
        Channel::Webhook => {
            return Err(anyhow::anyhow!("a webhook is not a send of the registration").into());
        }
    };
    let spent = registration::Entity::update_many()
        .col_expr(sends, Expr::col(sends).add(1))
        .col_expr(last_at, Expr::value(now))
        .filter(registration::Column::Id.eq(registration_id))
        .filter(registration::Column::Status.eq(RegistrationStatus::Pending))
        .filter(sends.lt(rules.max_sends))
        .filter(
            last_at
                .is_null()
                .or(last_at.lte(now - rules.resend_cooldown)),
        )
        .exec(txn)
        .await
        .context("Failed to count resend")?;
    Ok(spent.rows_affected == 1)
}
