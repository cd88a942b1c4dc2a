//! The six registration operations plus the host's read-only views.
use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use entity::{account_group, completion_link, customer, phone_guard, registration, sms_token};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
    sea_query::{Expr, ExprTrait, OnConflict},
};
use serde::Deserialize;
use uuid::Uuid;

use super::{
    hosts::AuthenticatedHost,
    messages::{queued_email, queued_sms},
    quotas,
    views::{
        ConfirmedRegistration, EmailAvailability, RegistrationTicket, STATUS_COMPLETED,
        STATUS_PENDING, STATUS_SUPERSEDED, UsernameAvailability, remaining,
    },
};
use crate::{
    crypto::{generate_sms_code, random_token, sha256_hex},
    domain::{
        AccountGroupId, BirthDate, CountryId, EmailAddress, Field, FieldErrors, Language,
        Md5PasswordHex, PersonName, PhoneNumber, SmsCode, SourceId,
        field::{optional_text, required_bool, required_text},
    },
    error::{AppError, AppResult, FieldError},
    metrics::Channel,
    state::Core,
};

/// Register input exactly as a client sent it (legacy REST field names).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RegisterRequest {
    pub phone: Field<String>,
    pub name: Field<String>,
    pub birth_date: Field<String>,
    pub birth_place: Field<String>,
    pub email: Field<String>,
    pub gender: Field<bool>,
    pub country_id: Field<String>,
    pub source_id: Field<String>,
    pub account_group_id: Field<String>,
    /// `id` or `en`; absent: from the country, else the configured default.
    pub language: Field<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ConfirmRequest {
    pub username: Field<String>,
    pub password: Field<String>,
    pub token: Field<String>,
}

/// Both resends name the registration by username and phone, which must be
/// the same number.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResendRequest {
    pub username: Field<String>,
    pub phone: Field<String>,
}

/// A registration request that passed every rule.
struct Applicant {
    phone: PhoneNumber,
    email: Option<EmailAddress>,
    name: PersonName,
    birth_date: BirthDate,
    birth_place: PersonName,
    gender: bool,
    country: CountryId,
    source_id: Option<SourceId>,
    account_group: AccountGroupId,
    language: Language,
}

async fn parse_applicant(
    core: &Core,
    request: &RegisterRequest,
    now: DateTime<Utc>,
) -> AppResult<Applicant> {
    let mut errors = FieldErrors::default();
    let country = errors
        .check(required_text(&request.country_id, "countryId"))
        .and_then(|c| errors.check(CountryId::parse(&c, "countryId")));
    let region = country
        .as_ref()
        .map_or(
            core.settings.registration.default_region.as_str(),
            CountryId::as_str,
        )
        .to_owned();
    let phone = errors
        .check(required_text(&request.phone, "phone"))
        .and_then(|p| errors.check(PhoneNumber::parse(&p, &region, "phone")))
        .and_then(|p| errors.check(allowed_destination(core, p)));
    let name = errors
        .check(required_text(&request.name, "name"))
        .and_then(|n| errors.check(PersonName::parse(n, "name")));
    let birth_date = errors
        .check(required_text(&request.birth_date, "birthDate"))
        .and_then(|d| errors.check(BirthDate::parse(&d, now.date_naive(), "birthDate")));
    let birth_place = errors
        .check(required_text(&request.birth_place, "birthPlace"))
        .and_then(|p| errors.check(PersonName::parse(p, "birthPlace")));
    let email = errors
        .check(optional_text(&request.email, "email"))
        .map(|e| e.map(|e| errors.check(EmailAddress::parse(&e, "email"))));
    let gender = errors.check(required_bool(&request.gender, "gender"));
    let source_id = errors
        .check(optional_text(&request.source_id, "sourceId"))
        .map(|s| s.map(|s| errors.check(SourceId::parse(&s, "sourceId"))));
    let account_group = errors
        .check(required_text(&request.account_group_id, "accountGroupId"))
        .and_then(|g| errors.check(AccountGroupId::parse(&g, "accountGroupId")));
    let requested_language = errors
        .check(optional_text(&request.language, "language"))
        .map(|l| l.map(|l| errors.check(Language::parse(&l, "language"))));
    if let Some(group) = &account_group {
        let exists = account_group::Entity::find_by_id(group.as_str().to_owned())
            .one(&core.db)
            .await
            .context("Failed to look up account group")?
            .is_some();
        if !exists {
            errors.push(FieldError::new(
                "accountGroupId",
                "unknown_account_group",
                format!(
                    "accountGroupId {} does not name an account group",
                    group.as_str()
                ),
            ));
        }
    }
    errors.finish()?;
    // Every `None` above recorded an error, so `finish` has returned early.
    let invalid = || anyhow::anyhow!("validated field missing");
    let language = Language::choose(
        requested_language
            .ok_or_else(invalid)?
            .map(|l| l.ok_or_else(invalid))
            .transpose()?,
        country.as_ref().ok_or_else(invalid)?,
        Language::from_stored(&core.settings.delivery.default_language),
    );
    Ok(Applicant {
        phone: phone.ok_or_else(invalid)?,
        email: email
            .ok_or_else(invalid)?
            .map(|e| e.ok_or_else(invalid))
            .transpose()?,
        name: name.ok_or_else(invalid)?,
        birth_date: birth_date.ok_or_else(invalid)?,
        birth_place: birth_place.ok_or_else(invalid)?,
        gender: gender.ok_or_else(invalid)?,
        country: country.ok_or_else(invalid)?,
        source_id: source_id
            .ok_or_else(invalid)?
            .map(|s| s.ok_or_else(invalid))
            .transpose()?,
        language,
        account_group: account_group.ok_or_else(invalid)?,
    })
}

/// SMS go only to the countries the operator allows (SMS pumping targets
/// expensive foreign routes).
fn allowed_destination(core: &Core, phone: PhoneNumber) -> Result<PhoneNumber, FieldError> {
    let allowed = &core.settings.quotas.allowed_countries;
    match phone.region() {
        Some(region) if allowed.iter().any(|c| c.eq_ignore_ascii_case(&region)) => Ok(phone),
        _ => Err(FieldError::new(
            "phone",
            "country_not_allowed",
            format!(
                "phone numbers of this country are not accepted; allowed: {}",
                allowed.join(", ")
            ),
        )),
    }
}

/// Reads a phone-number field of confirm and the resends: the number may be
/// written nationally, in the configured default region.
fn parse_username(
    core: &Core,
    field: &Field<String>,
    name: &str,
) -> Result<PhoneNumber, FieldError> {
    let text = required_text(field, name)?;
    PhoneNumber::parse(&text, &core.settings.registration.default_region, name)
}

pub async fn register(
    core: &Core,
    host: &AuthenticatedHost,
    request: RegisterRequest,
) -> AppResult<RegistrationTicket> {
    let now = core.clock.now();
    let applicant = parse_applicant(core, &request, now).await?;
    ensure_phone_not_locked(core, &applicant.phone, now).await?;
    ensure_not_a_customer(core, &applicant.phone, applicant.email.as_ref()).await?;

    let settings = &core.settings.registration;
    let code = generate_sms_code(settings.token_digits);
    let registration_id = Uuid::now_v7();
    let txn = begin(core).await?;
    // Writing first takes the write lock at once, so concurrent registers
    // queue instead of failing on SQLite's read-to-write upgrade.
    registration::Entity::update_many()
        .col_expr(registration::Column::Status, Expr::value(STATUS_SUPERSEDED))
        .filter(registration::Column::HostId.eq(host.id))
        .filter(registration::Column::Phone.eq(applicant.phone.as_str()))
        .filter(registration::Column::Status.eq(STATUS_PENDING))
        .exec(&txn)
        .await
        .context("Failed to supersede earlier registrations")?;
    let row = registration::ActiveModel {
        id: Set(registration_id),
        host_id: Set(host.id),
        phone: Set(applicant.phone.as_str().to_owned()),
        email: Set(applicant.email.as_ref().map(|e| e.as_str().to_owned())),
        name: Set(applicant.name.into_inner()),
        birth_date: Set(applicant.birth_date.into_inner()),
        birth_place: Set(applicant.birth_place.into_inner()),
        gender: Set(applicant.gender),
        country_id: Set(applicant.country.as_str().to_owned()),
        source_id: Set(applicant.source_id.map(SourceId::into_inner)),
        account_group_id: Set(applicant.account_group.as_str().to_owned()),
        status: Set(STATUS_PENDING.to_owned()),
        failed_attempts: Set(0),
        sms_sends: Set(1),
        email_sends: Set(i32::from(applicant.email.is_some())),
        last_sms_at: Set(Some(now)),
        last_email_at: Set(applicant.email.as_ref().map(|_| now)),
        created_at: Set(now),
        completed_at: Set(None),
        language: Set(applicant.language.code().to_owned()),
    };
    let registration = registration::Entity::insert(row)
        .exec_with_returning(&txn)
        .await
        .context("Failed to insert registration")?;
    let token = issue_sms(core, &txn, &registration, 1, &code, now).await?;
    if let Some(email) = &applicant.email {
        issue_completion_email(core, &txn, &registration, email.as_str(), now).await?;
    }
    commit(txn).await?;
    core.outbox_signal.notify_one();
    tracing::info!(
        host = %host.name,
        registration = %registration.id,
        phone = %applicant.phone.masked(),
        email = applicant.email.as_ref().map(EmailAddress::masked),
        "registration started"
    );
    Ok(RegistrationTicket::new(
        &registration,
        &token,
        settings,
        now,
    ))
}

/// Stores a new SMS token and queues the SMS carrying it.
async fn issue_sms(
    core: &Core,
    txn: &DatabaseTransaction,
    registration: &registration::Model,
    attempt: i32,
    code: &SmsCode,
    now: DateTime<Utc>,
) -> AppResult<sms_token::Model> {
    let settings = &core.settings.registration;
    let token = sms_token::Entity::insert(sms_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        registration_id: Set(registration.id),
        attempt: Set(attempt),
        prefix: Set(code.prefix().to_owned()),
        code_hash: Set(core.keys.token_hash(&code.expose())),
        created_at: Set(now),
        expires_at: Set(now + Duration::minutes(i64::from(settings.token_expiry_minutes))),
        superseded_at: Set(None),
    })
    .exec_with_returning(txn)
    .await
    .context("Failed to insert SMS token")?;
    let language = Language::from_stored(&registration.language);
    let text = core.templates.sms(
        language,
        &code.expose(),
        settings.token_expiry_minutes,
        &registration.name,
    )?;
    quotas::consume(
        core,
        txn,
        Channel::Sms,
        &registration.phone,
        registration.host_id,
        now,
    )
    .await?;
    entity::outbox_message::Entity::insert(queued_sms(
        registration.id,
        &registration.phone,
        text,
        now,
    ))
    .exec(txn)
    .await
    .context("Failed to queue SMS")?;
    Ok(token)
}

/// Stores a new single-use completion link and queues the email carrying it.
async fn issue_completion_email(
    core: &Core,
    txn: &DatabaseTransaction,
    registration: &registration::Model,
    email: &str,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let settings = &core.settings.registration;
    let link_token = random_token(32);
    completion_link::Entity::insert(completion_link::ActiveModel {
        id: Set(Uuid::now_v7()),
        registration_id: Set(registration.id),
        token_hash: Set(sha256_hex(&link_token)),
        created_at: Set(now),
        expires_at: Set(now + Duration::hours(i64::from(settings.completion_link_expiry_hours))),
        used_at: Set(None),
        superseded_at: Set(None),
    })
    .exec(txn)
    .await
    .context("Failed to insert completion link")?;
    let link = format!(
        "{}/complete/{link_token}",
        core.settings.public_base_url.trim_end_matches('/')
    );
    let language = Language::from_stored(&registration.language);
    let message = core.templates.email(
        language,
        &registration.name,
        &link,
        settings.completion_link_expiry_hours,
    )?;
    quotas::consume(core, txn, Channel::Email, email, registration.host_id, now).await?;
    entity::outbox_message::Entity::insert(queued_email(registration.id, email, message, now))
        .exec(txn)
        .await
        .context("Failed to queue email")?;
    Ok(())
}

async fn ensure_not_a_customer(
    core: &Core,
    phone: &PhoneNumber,
    email: Option<&EmailAddress>,
) -> AppResult<()> {
    if customer_with_username(core, phone.as_str()).await? {
        return Err(AppError::UsernameTaken);
    }
    if let Some(email) = email
        && customer_with_email(core, email.as_str()).await?
    {
        return Err(AppError::EmailTaken);
    }
    Ok(())
}

async fn customer_with_username(core: &Core, username: &str) -> AppResult<bool> {
    let count = customer::Entity::find()
        .filter(customer::Column::Username.eq(username))
        .count(&core.db)
        .await
        .context("Failed to look up customer by username")?;
    Ok(count > 0)
}

async fn customer_with_email(core: &Core, email: &str) -> AppResult<bool> {
    let count = customer::Entity::find()
        .filter(customer::Column::Email.eq(email))
        .count(&core.db)
        .await
        .context("Failed to look up customer by email")?;
    Ok(count > 0)
}

async fn ensure_phone_not_locked(
    core: &Core,
    phone: &PhoneNumber,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let guard = phone_guard::Entity::find_by_id(phone.as_str().to_owned())
        .one(&core.db)
        .await
        .context("Failed to look up phone guard")?;
    match guard.and_then(|g| g.locked_until) {
        Some(until) if until > now => Err(AppError::PhoneLocked {
            retry_after_seconds: seconds_until(now, until),
        }),
        _ => Ok(()),
    }
}

fn seconds_until(now: DateTime<Utc>, at: DateTime<Utc>) -> u64 {
    let millis = u64::try_from((at - now).num_milliseconds()).unwrap_or(0);
    std::cmp::max(millis.div_ceil(1000), 1)
}

/// The host's latest pending registration for a phone, or the error that
/// explains why there is none.
async fn pending_registration(
    core: &Core,
    host: &AuthenticatedHost,
    phone: &PhoneNumber,
) -> AppResult<registration::Model> {
    let latest = registration::Entity::find()
        .filter(registration::Column::HostId.eq(host.id))
        .filter(registration::Column::Phone.eq(phone.as_str()))
        .filter(registration::Column::Status.ne(STATUS_SUPERSEDED))
        .order_by_desc(registration::Column::Id)
        .one(&core.db)
        .await
        .context("Failed to look up registration")?;
    match latest {
        Some(r) if r.status == STATUS_PENDING => Ok(r),
        Some(r) if r.status == STATUS_COMPLETED => Err(AppError::RegistrationCompleted),
        _ => Err(AppError::RegistrationNotFound),
    }
}

pub(crate) async fn current_token(
    core: &Core,
    registration_id: Uuid,
) -> AppResult<sms_token::Model> {
    sms_token::Entity::find()
        .filter(sms_token::Column::RegistrationId.eq(registration_id))
        .order_by_desc(sms_token::Column::Attempt)
        .one(&core.db)
        .await
        .context("Failed to load SMS token")?
        .ok_or_else(|| anyhow::anyhow!("registration {registration_id} has no SMS token").into())
}

pub async fn confirm(
    core: &Core,
    host: &AuthenticatedHost,
    request: ConfirmRequest,
) -> AppResult<ConfirmedRegistration> {
    let mut errors = FieldErrors::default();
    let phone = errors.check(parse_username(core, &request.username, "username"));
    let password = errors
        .check(required_text(&request.password, "password"))
        .and_then(|p| errors.check(Md5PasswordHex::parse(&p, "password")));
    let code = errors
        .check(required_text(&request.token, "token"))
        .and_then(|t| errors.check(SmsCode::parse(&t, "token")));
    errors.finish()?;
    let (Some(phone), Some(password), Some(code)) = (phone, password, code) else {
        return Err(anyhow::anyhow!("validated field missing").into());
    };
    confirm_parsed(core, host, &phone, &password, &code, ConfirmedVia::Api).await
}

/// How a confirmation arrived.
#[derive(Debug, Clone, Copy)]
pub enum ConfirmedVia {
    Api,
    /// The completion page behind this email link: the link is used up and
    /// the email counts as verified, since the customer received it.
    EmailLink {
        link_id: Uuid,
    },
}

/// Confirms with already-parsed input; the completion page calls this too.
pub async fn confirm_parsed(
    core: &Core,
    host: &AuthenticatedHost,
    phone: &PhoneNumber,
    password: &Md5PasswordHex,
    code: &SmsCode,
    via: ConfirmedVia,
) -> AppResult<ConfirmedRegistration> {
    let now = core.clock.now();
    let settings = &core.settings.registration;
    ensure_phone_not_locked(core, phone, now).await?;
    let registration = pending_registration(core, host, phone).await?;
    if remaining(settings.max_wrong_codes, registration.failed_attempts) == 0 {
        return Err(AppError::RegistrationLocked);
    }
    let submitted_hash = core.keys.token_hash(&code.expose());
    let token = current_token(core, registration.id).await?;
    if token.code_hash != submitted_hash {
        if is_superseded_code(core, host, phone, &submitted_hash).await? {
            return Err(AppError::TokenSuperseded);
        }
        if token.expires_at <= now {
            return Err(AppError::TokenExpired);
        }
        return Err(record_wrong_code(core, &registration, phone, now).await?);
    }
    if token.expires_at <= now {
        return Err(AppError::TokenExpired);
    }

    let password_hash = core.hashing.hash(password).await?;
    let now = core.clock.now();
    let txn = begin(core).await?;
    let consumed = sms_token::Entity::update_many()
        .col_expr(sms_token::Column::SupersededAt, Expr::value(now))
        .filter(sms_token::Column::Id.eq(token.id))
        .filter(sms_token::Column::SupersededAt.is_null())
        .exec(&txn)
        .await
        .context("Failed to consume SMS token")?;
    let completed = registration::Entity::update_many()
        .col_expr(registration::Column::Status, Expr::value(STATUS_COMPLETED))
        .col_expr(registration::Column::CompletedAt, Expr::value(now))
        .filter(registration::Column::Id.eq(registration.id))
        .filter(registration::Column::Status.eq(STATUS_PENDING))
        .filter(registration::Column::FailedAttempts.lt(settings.max_wrong_codes))
        .exec(&txn)
        .await
        .context("Failed to complete registration")?;
    if consumed.rows_affected == 0 || completed.rows_affected == 0 {
        txn.rollback().await.context("Failed to roll back")?;
        return Err(explain_lost_race(core, registration.id, settings.max_wrong_codes).await?);
    }
    let customer_id = Uuid::now_v7();
    let inserted = customer::Entity::insert(customer::ActiveModel {
        id: Set(customer_id),
        username: Set(registration.phone.clone()),
        email: Set(registration.email.clone()),
        email_verified: Set(matches!(via, ConfirmedVia::EmailLink { .. })),
        password_hash: Set(password_hash),
        host_id: Set(host.id),
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
    .exec(&txn)
    .await;
    if let Err(e) = inserted {
        txn.rollback().await.context("Failed to roll back")?;
        if super::is_unique_violation(&e) {
            return Err(
                if customer_with_username(core, &registration.phone).await? {
                    AppError::UsernameTaken
                } else {
                    AppError::EmailTaken
                },
            );
        }
        return Err(anyhow::Error::new(e)
            .context("Failed to insert customer")
            .into());
    }
    if let ConfirmedVia::EmailLink { link_id } = via {
        completion_link::Entity::update_many()
            .col_expr(completion_link::Column::UsedAt, Expr::value(now))
            .filter(completion_link::Column::Id.eq(link_id))
            .exec(&txn)
            .await
            .context("Failed to mark completion link used")?;
    }
    phone_guard::Entity::update_many()
        .col_expr(phone_guard::Column::ConsecutiveFailures, Expr::value(0))
        .filter(phone_guard::Column::Phone.eq(phone.as_str()))
        .exec(&txn)
        .await
        .context("Failed to reset phone guard")?;
    commit(txn).await?;
    tracing::info!(host = %host.name, registration = %registration.id, customer = %customer_id, "registration completed");
    Ok(ConfirmedRegistration {
        id: registration.id,
        customer_id,
        username: registration.phone,
        completed_at: now,
    })
}

/// Another request changed the registration between our read and our
/// write; say what it became.
async fn explain_lost_race(
    core: &Core,
    registration_id: Uuid,
    max_wrong_codes: u32,
) -> AppResult<AppError> {
    let current = registration::Entity::find_by_id(registration_id)
        .one(&core.db)
        .await
        .context("Failed to reload registration")?
        .ok_or_else(|| anyhow::anyhow!("registration {registration_id} vanished"))?;
    Ok(match current.status.as_str() {
        STATUS_COMPLETED => AppError::RegistrationCompleted,
        STATUS_SUPERSEDED => AppError::TokenSuperseded,
        _ if remaining(max_wrong_codes, current.failed_attempts) == 0 => {
            AppError::RegistrationLocked
        }
        _ => AppError::TokenSuperseded,
    })
}

/// Whether the code belongs to an earlier SMS of this host's registrations
/// for the phone: the customer typed an old SMS, not a guess.
async fn is_superseded_code(
    core: &Core,
    host: &AuthenticatedHost,
    phone: &PhoneNumber,
    code_hash: &str,
) -> AppResult<bool> {
    let registrations: Vec<Uuid> = registration::Entity::find()
        .select_only()
        .column(registration::Column::Id)
        .filter(registration::Column::HostId.eq(host.id))
        .filter(registration::Column::Phone.eq(phone.as_str()))
        .into_tuple()
        .all(&core.db)
        .await
        .context("Failed to list registrations of phone")?;
    let matches = sms_token::Entity::find()
        .filter(sms_token::Column::RegistrationId.is_in(registrations))
        .filter(sms_token::Column::CodeHash.eq(code_hash))
        .count(&core.db)
        .await
        .context("Failed to look up earlier SMS tokens")?;
    Ok(matches > 0)
}

/// Counts a wrong code against the registration and the phone, atomically:
/// the conditional increment lets exactly `max_wrong_codes` guesses through
/// however many arrive at once.
async fn record_wrong_code(
    core: &Core,
    registration: &registration::Model,
    phone: &PhoneNumber,
    now: DateTime<Utc>,
) -> AppResult<AppError> {
    let settings = &core.settings.registration;
    let txn = begin(core).await?;
    let counted = registration::Entity::update_many()
        .col_expr(
            registration::Column::FailedAttempts,
            Expr::col(registration::Column::FailedAttempts).add(1),
        )
        .filter(registration::Column::Id.eq(registration.id))
        .filter(registration::Column::Status.eq(STATUS_PENDING))
        .filter(registration::Column::FailedAttempts.lt(settings.max_wrong_codes))
        .exec(&txn)
        .await
        .context("Failed to count wrong code")?;
    if counted.rows_affected == 0 {
        txn.rollback().await.context("Failed to roll back")?;
        return explain_lost_race(core, registration.id, settings.max_wrong_codes).await;
    }
    let failed: i32 = registration::Entity::find_by_id(registration.id)
        .select_only()
        .column(registration::Column::FailedAttempts)
        .into_tuple()
        .one(&txn)
        .await
        .context("Failed to read wrong-code count")?
        .ok_or_else(|| anyhow::anyhow!("registration vanished"))?;
    phone_guard::Entity::insert(phone_guard::ActiveModel {
        phone: Set(phone.as_str().to_owned()),
        consecutive_failures: Set(1),
        locked_until: Set(None),
    })
    .on_conflict(
        OnConflict::column(phone_guard::Column::Phone)
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
    .exec_without_returning(&txn)
    .await
    .context("Failed to count wrong code for phone")?;
    let locked = phone_guard::Entity::update_many()
        .col_expr(
            phone_guard::Column::LockedUntil,
            Expr::value(now + Duration::minutes(i64::from(settings.phone_lock_minutes))),
        )
        .col_expr(phone_guard::Column::ConsecutiveFailures, Expr::value(0))
        .filter(phone_guard::Column::Phone.eq(phone.as_str()))
        .filter(phone_guard::Column::ConsecutiveFailures.gte(settings.phone_lock_threshold))
        .exec(&txn)
        .await
        .context("Failed to lock phone")?;
    commit(txn).await?;
    if locked.rows_affected > 0 {
        tracing::warn!(phone = %phone.masked(), "phone refused after too many wrong codes");
    }
    Ok(AppError::TokenInvalid {
        attempts_remaining: remaining(settings.max_wrong_codes, failed),
    })
}

fn parse_resend(core: &Core, request: &ResendRequest) -> AppResult<PhoneNumber> {
    let mut errors = FieldErrors::default();
    let username = errors.check(parse_username(core, &request.username, "username"));
    let phone = errors.check(parse_username(core, &request.phone, "phone"));
    if let (Some(username), Some(phone)) = (&username, &phone)
        && username != phone
    {
        errors.push(FieldError::new(
            "phone",
            "mismatch",
            "phone must be the same number as username",
        ));
    }
    errors.finish()?;
    phone.ok_or_else(|| anyhow::anyhow!("validated field missing").into())
}

/// The registration's send counter and last-send time for a channel.
fn send_columns(channel: Channel) -> (registration::Column, registration::Column) {
    match channel {
        Channel::Sms => (
            registration::Column::SmsSends,
            registration::Column::LastSmsAt,
        ),
        Channel::Email => (
            registration::Column::EmailSends,
            registration::Column::LastEmailAt,
        ),
    }
}

fn send_usage(
    channel: Channel,
    registration: &registration::Model,
) -> (i32, Option<DateTime<Utc>>) {
    match channel {
        Channel::Sms => (registration.sms_sends, registration.last_sms_at),
        Channel::Email => (registration.email_sends, registration.last_email_at),
    }
}

/// Spends one send of the channel if the cap and the cooldown allow it, in
/// one conditional UPDATE so concurrent resends cannot both pass.
async fn spend_send(
    core: &Core,
    txn: &DatabaseTransaction,
    registration: &registration::Model,
    channel: Channel,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let settings = &core.settings.registration;
    let cooldown = Duration::seconds(i64::from(settings.resend_cooldown_seconds));
    let (sends, last_at) = send_columns(channel);
    let spent = registration::Entity::update_many()
        .col_expr(sends, Expr::col(sends).add(1))
        .col_expr(last_at, Expr::value(now))
        .filter(registration::Column::Id.eq(registration.id))
        .filter(registration::Column::Status.eq(STATUS_PENDING))
        .filter(sends.lt(settings.max_sends))
        .filter(last_at.is_null().or(last_at.lte(now - cooldown)))
        .exec(txn)
        .await
        .context("Failed to count resend")?;
    if spent.rows_affected == 1 {
        return Ok(());
    }
    let current = reload(txn, registration.id).await?;
    if current.status != STATUS_PENDING {
        return Err(explain_lost_race(core, registration.id, settings.max_wrong_codes).await?);
    }
    let (used, last) = send_usage(channel, &current);
    if remaining(settings.max_sends, used) == 0 {
        let token = current_token(core, registration.id).await?;
        return Err(AppError::ResendLimitReached {
            retry_after_seconds: seconds_until(now, token.expires_at),
        });
    }
    let next = last.map_or(now, |at| at + cooldown);
    Err(AppError::ResendTooSoon {
        retry_after_seconds: seconds_until(now, next),
    })
}

/// What both resends do first: find the pending registration the request
/// names, check it may still receive messages, and spend one send of the
/// channel inside the returned transaction.
async fn begin_resend(
    core: &Core,
    host: &AuthenticatedHost,
    request: &ResendRequest,
    channel: Channel,
) -> AppResult<(registration::Model, DatabaseTransaction, DateTime<Utc>)> {
    let phone = parse_resend(core, request)?;
    let now = core.clock.now();
    ensure_phone_not_locked(core, &phone, now).await?;
    let registration = pending_registration(core, host, &phone).await?;
    if remaining(
        core.settings.registration.max_wrong_codes,
        registration.failed_attempts,
    ) == 0
    {
        return Err(AppError::RegistrationLocked);
    }
    if channel == Channel::Email && registration.email.is_none() {
        return Err(AppError::NoEmailOnRegistration);
    }
    let txn = begin(core).await?;
    if let Err(e) = spend_send(core, &txn, &registration, channel, now).await {
        txn.rollback().await.context("Failed to roll back")?;
        return Err(e);
    }
    Ok((registration, txn, now))
}

async fn reload(txn: &DatabaseTransaction, id: Uuid) -> AppResult<registration::Model> {
    Ok(registration::Entity::find_by_id(id)
        .one(txn)
        .await
        .context("Failed to reload registration")?
        .ok_or_else(|| anyhow::anyhow!("registration {id} vanished"))?)
}

pub async fn resend_sms(
    core: &Core,
    host: &AuthenticatedHost,
    request: ResendRequest,
) -> AppResult<RegistrationTicket> {
    let (registration, txn, now) = begin_resend(core, host, &request, Channel::Sms).await?;
    sms_token::Entity::update_many()
        .col_expr(sms_token::Column::SupersededAt, Expr::value(now))
        .filter(sms_token::Column::RegistrationId.eq(registration.id))
        .filter(sms_token::Column::SupersededAt.is_null())
        .exec(&txn)
        .await
        .context("Failed to supersede SMS tokens")?;
    let updated = reload(&txn, registration.id).await?;
    let settings = &core.settings.registration;
    let code = generate_sms_code(settings.token_digits);
    let token = issue_sms(core, &txn, &updated, updated.sms_sends, &code, now).await?;
    commit(txn).await?;
    core.outbox_signal.notify_one();
    tracing::info!(host = %host.name, registration = %registration.id, attempt = token.attempt, "SMS resent");
    Ok(RegistrationTicket::new(&updated, &token, settings, now))
}

pub async fn resend_email(
    core: &Core,
    host: &AuthenticatedHost,
    request: ResendRequest,
) -> AppResult<RegistrationTicket> {
    let (registration, txn, now) = begin_resend(core, host, &request, Channel::Email).await?;
    completion_link::Entity::update_many()
        .col_expr(completion_link::Column::SupersededAt, Expr::value(now))
        .filter(completion_link::Column::RegistrationId.eq(registration.id))
        .filter(completion_link::Column::SupersededAt.is_null())
        .exec(&txn)
        .await
        .context("Failed to supersede completion links")?;
    let email = registration.email.clone().unwrap_or_default();
    issue_completion_email(core, &txn, &registration, &email, now).await?;
    let updated = reload(&txn, registration.id).await?;
    commit(txn).await?;
    core.outbox_signal.notify_one();
    tracing::info!(host = %host.name, registration = %registration.id, "completion email resent");
    let token = current_token(core, registration.id).await?;
    Ok(RegistrationTicket::new(
        &updated,
        &token,
        &core.settings.registration,
        now,
    ))
}

pub async fn verify_username(
    core: &Core,
    username: Option<&str>,
) -> AppResult<UsernameAvailability> {
    let field = Field::from(username.map(str::to_owned));
    let phone =
        parse_username(core, &field, "username").map_err(|e| AppError::Validation(vec![e]))?;
    let exists = customer_with_username(core, phone.as_str()).await?;
    Ok(UsernameAvailability {
        username: phone.as_str().to_owned(),
        exists,
    })
}

pub async fn verify_email(core: &Core, email: Option<&str>) -> AppResult<EmailAvailability> {
    let field = Field::from(email.map(str::to_owned));
    let email = required_text(&field, "email")
        .and_then(|e| EmailAddress::parse(&e, "email"))
        .map_err(|e| AppError::Validation(vec![e]))?;
    let exists = customer_with_email(core, email.as_str()).await?;
    Ok(EmailAvailability {
        email: email.as_str().to_owned(),
        exists,
    })
}

async fn begin(core: &Core) -> AppResult<DatabaseTransaction> {
    Ok(core
        .db
        .begin()
        .await
        .context("Failed to begin transaction")?)
}

async fn commit(txn: DatabaseTransaction) -> AppResult<()> {
    Ok(txn.commit().await.context("Failed to commit transaction")?)
}

/// A registration as its host sees it in GraphQL.
#[derive(Debug, Clone)]
pub struct RegistrationRecord {
    pub id: Uuid,
    pub phone: String,
    pub email: Option<String>,
    pub name: String,
    pub status: String,
    pub account_group_id: String,
    pub failed_attempts: i32,
    pub sms_sends: i32,
    pub email_sends: i32,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl From<registration::Model> for RegistrationRecord {
    fn from(r: registration::Model) -> Self {
        Self {
            id: r.id,
            phone: r.phone,
            email: r.email,
            name: r.name,
            status: r.status,
            account_group_id: r.account_group_id,
            failed_attempts: r.failed_attempts,
            sms_sends: r.sms_sends,
            email_sends: r.email_sends,
            created_at: r.created_at,
            completed_at: r.completed_at,
        }
    }
}

pub async fn find_registration(
    core: &Core,
    host: &AuthenticatedHost,
    id: Uuid,
) -> AppResult<Option<RegistrationRecord>> {
    let found = registration::Entity::find_by_id(id)
        .filter(registration::Column::HostId.eq(host.id))
        .one(&core.db)
        .await
        .context("Failed to load registration")?;
    Ok(found.map(Into::into))
}

/// Newest first. `after` is the id of the last item of the previous page
/// (ids are time-ordered UUIDv7, so they sort like creation time).
pub async fn list_registrations(
    core: &Core,
    host: &AuthenticatedHost,
    first: u64,
    after: Option<Uuid>,
) -> AppResult<(Vec<RegistrationRecord>, bool)> {
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
    rows.truncate(first as usize);
    Ok((rows.into_iter().map(Into::into).collect(), has_more))
}

/// The current SMS token of each registration, for DataLoaders.
pub async fn current_tokens(
    core: &Core,
    registration_ids: &[Uuid],
) -> AppResult<std::collections::HashMap<Uuid, sms_token::Model>> {
    let tokens = sms_token::Entity::find()
        .filter(sms_token::Column::RegistrationId.is_in(registration_ids.iter().copied()))
        .order_by_asc(sms_token::Column::Attempt)
        .all(&core.db)
        .await
        .context("Failed to load SMS tokens")?;
    // Ascending order: the last insert per registration is the current one.
    Ok(tokens.into_iter().map(|t| (t.registration_id, t)).collect())
}

pub async fn account_groups(
    core: &Core,
    ids: &[String],
) -> AppResult<std::collections::HashMap<String, account_group::Model>> {
    let groups = account_group::Entity::find()
        .filter(account_group::Column::Id.is_in(ids.iter().cloned()))
        .all(&core.db)
        .await
        .context("Failed to load account groups")?;
    Ok(groups.into_iter().map(|g| (g.id.clone(), g)).collect())
}

pub async fn customers_by_registration(
    core: &Core,
    registration_ids: &[Uuid],
) -> AppResult<std::collections::HashMap<Uuid, customer::Model>> {
    let customers = customer::Entity::find()
        .filter(customer::Column::RegistrationId.is_in(registration_ids.iter().copied()))
        .all(&core.db)
        .await
        .context("Failed to load customers")?;
    Ok(customers
        .into_iter()
        .map(|c| (c.registration_id, c))
        .collect())
}
