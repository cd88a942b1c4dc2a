//! What a register is checked against before it is written: the phone's
//! lock, whether its username (the phone) or email belongs to a customer,
//! the register cooldown, whether the host has a pending registration of
//! the phone to replace, and the host's webhook endpoint, read for all the
//! registers of a batch in one statement at the start of its transaction
//! (`batch`), and the order a refusal is told in.
use anyhow::Context;
use chrono::{DateTime, Utc};
use entity::{customer, phone_guard, registration, states::RegistrationStatus};
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::{
    domain::{
        PhoneNumber, Rules,
        registration::{ensure_phone_not_locked, ensure_register_cooled_down},
    },
    error::{CoreError, CoreResult},
    service::webhooks,
};

/// What one register is checked against. One statement for the batch,
/// where each register used to read its own before it was queued, a round
/// trip and a commit of its own (docs/PERFORMANCE.md, session 27).
#[derive(Debug)]
pub struct RegisterChecks {
    /// Until when the phone is refused to the host, if it is.
    pub phone_locked_until: Option<DateTime<Utc>>,
    pub username_taken: bool,
    pub email_taken: bool,
    /// When the host last registered the phone, if ever.
    pub last_registered_at: Option<DateTime<Utc>>,
    /// Whether the host has a pending registration of the phone, which
    /// the new one replaces (`store::supersede_pending`).
    pub replaces_pending: bool,
    /// Where the host's webhook events go, if it has an enabled endpoint.
    pub webhook_url: Option<String>,
}

impl RegisterChecks {
    /// Whether the register may be written, and if not the one refusal a
    /// lone register is told, in this order: the phone's lock, the
    /// username, the email, the cooldown.
    pub fn admit(&self, now: DateTime<Utc>, rules: &Rules) -> CoreResult<()> {
        ensure_phone_not_locked(self.phone_locked_until, now)?;
        if self.username_taken {
            return Err(CoreError::UsernameTaken);
        }
        if self.email_taken {
            return Err(CoreError::EmailTaken);
        }
        ensure_register_cooled_down(self.last_registered_at, now, rules)
    }
}

/// One register as the checks read it.
#[derive(Debug, Clone, Copy)]
pub struct Applicant<'a> {
    pub host_id: Uuid,
    pub phone: &'a PhoneNumber,
    pub email: Option<&'a str>,
}

/// The checks of each of `applicants`, in their order, read in `txn`.
pub async fn register_checks(
    txn: &impl ConnectionTrait,
    applicants: &[Applicant<'_>],
) -> CoreResult<Vec<RegisterChecks>> {
    let rows = txn
        .query_all(&register_checks_query(applicants))
        .await
        .context("Failed to run the register checks")?;
    let mut checks: Vec<Option<RegisterChecks>> = applicants.iter().map(|_| None).collect();
    let read = |column: &str| format!("Failed to read the register check {column}");
    for row in &rows {
        let i: i32 = row.try_get("", "i").with_context(|| read("i"))?;
        let usernames: i64 = row
            .try_get("", "usernames")
            .with_context(|| read("usernames"))?;
        let emails: i64 = row.try_get("", "emails").with_context(|| read("emails"))?;
        let pending: i64 = row
            .try_get("", "pending")
            .with_context(|| read("pending"))?;
        let slot = usize::try_from(i)
            .ok()
            .and_then(|i| checks.get_mut(i))
            .with_context(|| format!("the register checks returned an unknown applicant {i}"))?;
        *slot = Some(RegisterChecks {
            phone_locked_until: row
                .try_get("", "locked_until")
                .with_context(|| read("locked_until"))?,
            username_taken: usernames > 0,
            email_taken: emails > 0,
            last_registered_at: row
                .try_get("", "last_registered_at")
                .with_context(|| read("last_registered_at"))?,
            replaces_pending: pending > 0,
            webhook_url: row
                .try_get("", "webhook_url")
                .with_context(|| read("webhook_url"))?,
        });
    }
    Ok(checks
        .into_iter()
        .enumerate()
        .map(|(i, found)| found.with_context(|| format!("no register checks for applicant {i}")))
        .collect::<anyhow::Result<_>>()?)
}

/// The statement of [`register_checks`]: the applicants as a derived table
/// of bound values (`SELECT ? AS i, ... UNION ALL SELECT ?, ...`, which
/// every supported database reads; a `VALUES` list names its columns
/// differently on each) and, for each, six indexed lookups as correlated
/// scalar subqueries. Counts, not `EXISTS`, because `COUNT(*)` is a 64-bit
/// integer on every database, where `EXISTS` is a boolean on one and an
/// integer on the others.
pub fn register_checks_query(applicants: &[Applicant<'_>]) -> sea_orm::sea_query::SelectStatement {
    use sea_orm::sea_query::{
        Alias, Asterisk, Expr, ExprTrait, Order, Query, SelectStatement, UnionType,
    };
    let scalar = |query: &mut SelectStatement| Expr::SubQuery(None, Box::new(query.take().into()));
    let applicant = Alias::new("applicant");
    let of_applicant = |column: &str| Expr::col((applicant.clone(), Alias::new(column)));
    let row = |(i, one): (usize, &Applicant<'_>)| {
        Query::select()
            .expr_as(
                Expr::val(i32::try_from(i).unwrap_or(i32::MAX)),
                Alias::new("i"),
            )
            .expr_as(Expr::val(one.host_id), Alias::new("host_id"))
            .expr_as(Expr::val(one.phone.as_str()), Alias::new("phone"))
            .expr_as(Expr::val(one.email.map(str::to_owned)), Alias::new("email"))
            .take()
    };
    let listed = applicants
        .iter()
        .enumerate()
        .map(row)
        .reduce(|mut first, next| {
            first.union(UnionType::All, next);
            first
        })
        .unwrap_or_else(|| {
            // No applicant: a list with its columns and no row.
            let mut nobody = row((
                0,
                &Applicant {
                    host_id: Uuid::nil(),
                    phone: &PhoneNumber::from_stored(String::new()),
                    email: None,
                },
            ));
            nobody.and_where(Expr::val(1).eq(0));
            nobody
        });
    let mut locked = Query::select();
    locked
        .column(phone_guard::Column::LockedUntil)
        .from(phone_guard::Entity)
        .and_where(
            Expr::col((phone_guard::Entity, phone_guard::Column::HostId))
                .eq(of_applicant("host_id")),
        )
        .and_where(
            Expr::col((phone_guard::Entity, phone_guard::Column::Phone)).eq(of_applicant("phone")),
        );
    // Customers whose `column` holds the applicant's `field`.
    let customers_with = |column: customer::Column, field: &str| {
        Query::select()
            .expr(Expr::col(Asterisk).count())
            .from(customer::Entity)
            .and_where(Expr::col((customer::Entity, column)).eq(of_applicant(field)))
            .take()
    };
    let mut usernames = customers_with(customer::Column::Username, "phone");
    let mut emails = customers_with(customer::Column::Email, "email");
    // The host's registrations of the applicant's phone, answered from
    // idx_registration_host_phone_created alone, the one index that leads
    // with the host: none lets a planner walk the host's registrations
    // newest first, filtering for the phone (migration m20261204_000002).
    let registrations_of_phone = || {
        Query::select()
            .from(registration::Entity)
            .and_where(
                Expr::col((registration::Entity, registration::Column::HostId))
                    .eq(of_applicant("host_id")),
            )
            .and_where(
                Expr::col((registration::Entity, registration::Column::Phone))
                    .eq(of_applicant("phone")),
            )
            .take()
    };
    let mut last = registrations_of_phone();
    last.column((registration::Entity, registration::Column::CreatedAt))
        .order_by(
            (registration::Entity, registration::Column::CreatedAt),
            Order::Desc,
        )
        .limit(1);
    let mut pending = registrations_of_phone();
    pending.expr(Expr::col(Asterisk).count()).and_where(
        Expr::col((registration::Entity, registration::Column::Status))
            .eq(RegistrationStatus::Pending),
    );
    let mut webhook = webhooks::enabled_endpoint_url(of_applicant("host_id"));
    Query::select()
        .expr(of_applicant("i"))
        .expr_as(scalar(&mut locked), Alias::new("locked_until"))
        .expr_as(scalar(&mut usernames), Alias::new("usernames"))
        .expr_as(scalar(&mut emails), Alias::new("emails"))
        .expr_as(scalar(&mut last), Alias::new("last_registered_at"))
        .expr_as(scalar(&mut pending), Alias::new("pending"))
        .expr_as(scalar(&mut webhook), Alias::new("webhook_url"))
        .from_subquery(listed, applicant)
        // Moved out, not cloned: copying the subqueries and dropping the
        // copies were a fifth of the checks' instructions.
        .take()
}
