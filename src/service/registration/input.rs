//! From what a transport received to domain values. Transports fill these
//! inputs (REST from the legacy JSON, GraphQL from its input objects) and
//! the parse functions check every field, reporting all problems at once.
use chrono::NaiveDate;
use entity::states::Language;

use crate::{
    domain::{
        AccountGroupId, BirthDate, CountryId, EmailAddress, Invalid, Md5PasswordHex, PersonName,
        PhoneNumber, SmsCode, SourceId, choose_language, parse_language,
    },
    error::{CoreError, CoreResult, FieldError},
    service::account_groups,
    state::Core,
};

/// One input field as the transport received it. Unlike `Option<T>` it can
/// say that a value came with the wrong type (REST clients send numbers
/// where strings belong), so one response can list every bad field.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Field<T> {
    #[default]
    Absent,
    Present(T),
    WrongType,
}

impl<T> From<Option<T>> for Field<T> {
    fn from(value: Option<T>) -> Self {
        value.map_or(Field::Absent, Field::Present)
    }
}

/// Register input, field by field, as a client sent it.
#[derive(Debug, Default)]
pub struct RegisterInput {
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

#[derive(Debug, Default)]
pub struct ConfirmInput {
    pub username: Field<String>,
    pub password: Field<String>,
    pub token: Field<String>,
}

/// Both resends name the registration by username and phone, which must be
/// the same number.
#[derive(Debug, Default)]
pub struct ResendInput {
    pub username: Field<String>,
    pub phone: Field<String>,
}

/// A registration request that passed every rule.
#[derive(Clone)]
pub struct NewRegistration {
    pub phone: PhoneNumber,
    pub email: Option<EmailAddress>,
    pub name: PersonName,
    pub birth_date: BirthDate,
    pub birth_place: PersonName,
    pub gender: bool,
    pub country: CountryId,
    pub source_id: Option<SourceId>,
    pub account_group: AccountGroupId,
    pub language: Language,
}

/// What confirm needs, parsed.
pub struct Confirmation {
    pub phone: PhoneNumber,
    pub password: Md5PasswordHex,
    pub code: SmsCode,
}

/// Collects field problems so a request reports all of them at once.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn push(&mut self, error: FieldError) {
        self.0.push(error);
    }

    /// Keeps the value, or records the error and yields `None`.
    pub fn check<T>(&mut self, result: Result<T, FieldError>) -> Option<T> {
        result.map_err(|e| self.0.push(e)).ok()
    }

    /// Reads `name` with a domain `parse`; a broken rule is recorded under it.
    pub fn parse<T>(&mut self, name: &str, result: Result<T, Invalid>) -> Option<T> {
        self.check(result.map_err(|invalid| FieldError::on(name, invalid)))
    }

    /// Ends validation: `Err` when anything was recorded.
    pub fn finish(self) -> CoreResult<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(CoreError::Validation(self.0))
        }
    }
}

/// Every `None` a parse produced recorded an error, so after `finish`
/// succeeded a missing value is a bug, not a client mistake.
fn checked<T>(value: Option<T>) -> CoreResult<T> {
    value.ok_or_else(|| anyhow::anyhow!("validated field missing").into())
}

/// The text of a required string field, trimmed.
pub fn required_text(field: &Field<String>, name: &str) -> Result<String, FieldError> {
    match field {
        Field::Present(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
        Field::Present(_) | Field::Absent => Err(FieldError::new(
            name,
            "required",
            format!("{name} is required"),
        )),
        Field::WrongType => Err(wrong_type(name, "a string")),
    }
}

/// The text of an optional string field, trimmed; blank counts as absent.
fn optional_text(field: &Field<String>, name: &str) -> Result<Option<String>, FieldError> {
    match field {
        Field::Present(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_owned())),
        Field::Present(_) | Field::Absent => Ok(None),
        Field::WrongType => Err(wrong_type(name, "a string")),
    }
}

fn required_bool(field: &Field<bool>, name: &str) -> Result<bool, FieldError> {
    match field {
        Field::Present(value) => Ok(*value),
        Field::Absent => Err(FieldError::new(
            name,
            "required",
            format!("{name} is required"),
        )),
        Field::WrongType => Err(wrong_type(name, "true or false")),
    }
}

fn wrong_type(name: &str, expected: &str) -> FieldError {
    FieldError::new(name, "invalid_type", format!("{name} must be {expected}"))
}

/// A phone-number field of confirm, the resends and verify: the number may
/// be written nationally, in the configured default region.
pub fn username(core: &Core, field: &Field<String>, name: &str) -> Result<PhoneNumber, FieldError> {
    let text = required_text(field, name)?;
    PhoneNumber::parse(&text, &core.settings.registration.default_region)
        .map_err(|invalid| FieldError::on(name, invalid))
}

/// Checks every field of a registration; `group_exists` answers whether an
/// account group id names a group (the one rule that needs the database).
pub async fn registration<F, Fut>(
    core: &Core,
    input: &RegisterInput,
    today: NaiveDate,
    group_exists: F,
) -> CoreResult<NewRegistration>
where
    F: FnOnce(AccountGroupId) -> Fut,
    Fut: Future<Output = CoreResult<bool>>,
{
    let mut errors = FieldErrors::default();
    let country = errors
        .check(required_text(&input.country_id, "countryId"))
        .and_then(|c| errors.parse("countryId", CountryId::parse(&c)));
    let region = country.as_ref().map_or(
        core.settings.registration.default_region.as_str(),
        CountryId::as_str,
    );
    let phone = errors
        .check(required_text(&input.phone, "phone"))
        .and_then(|p| errors.parse("phone", PhoneNumber::parse(&p, region)))
        .and_then(|p| errors.check(allowed_destination(core, p)));
    let name = errors
        .check(required_text(&input.name, "name"))
        .and_then(|n| errors.parse("name", PersonName::parse(n)));
    let birth_date = errors
        .check(required_text(&input.birth_date, "birthDate"))
        .and_then(|d| errors.parse("birthDate", BirthDate::parse(&d, today)));
    let birth_place = errors
        .check(required_text(&input.birth_place, "birthPlace"))
        .and_then(|p| errors.parse("birthPlace", PersonName::parse(p)));
    let email = errors
        .check(optional_text(&input.email, "email"))
        .map(|e| e.map(|e| errors.parse("email", EmailAddress::parse(&e))));
    let gender = errors.check(required_bool(&input.gender, "gender"));
    let source_id = errors
        .check(optional_text(&input.source_id, "sourceId"))
        .map(|s| s.map(|s| errors.parse("sourceId", SourceId::parse(&s))));
    let account_group = errors
        .check(required_text(&input.account_group_id, "accountGroupId"))
        .and_then(|g| errors.parse("accountGroupId", AccountGroupId::parse(&g)));
    let requested_language = errors
        .check(optional_text(&input.language, "language"))
        .map(|l| l.map(|l| errors.parse("language", parse_language(&l))));
    if let Some(group) = &account_group
        && !group_exists(group.clone()).await?
    {
        errors.push(account_groups::unknown(group));
    }
    errors.finish()?;
    let country = checked(country)?;
    let requested_language = checked(requested_language)?.map(checked).transpose()?;
    Ok(NewRegistration {
        language: choose_language(
            requested_language,
            &country,
            core.settings.delivery.default_language,
        ),
        phone: checked(phone)?,
        email: checked(email)?.map(checked).transpose()?,
        name: checked(name)?,
        birth_date: checked(birth_date)?,
        birth_place: checked(birth_place)?,
        gender: checked(gender)?,
        country,
        source_id: checked(source_id)?.map(checked).transpose()?,
        account_group: checked(account_group)?,
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

pub fn confirmation(core: &Core, input: &ConfirmInput) -> CoreResult<Confirmation> {
    let mut errors = FieldErrors::default();
    let phone = errors.check(username(core, &input.username, "username"));
    let password = errors
        .check(required_text(&input.password, "password"))
        .and_then(|p| errors.parse("password", Md5PasswordHex::parse(&p)));
    let code = errors
        .check(required_text(&input.token, "token"))
        .and_then(|t| errors.parse("token", SmsCode::parse(&t)));
    errors.finish()?;
    Ok(Confirmation {
        phone: checked(phone)?,
        password: checked(password)?,
        code: checked(code)?,
    })
}

/// The phone a resend names.
pub fn resend_target(core: &Core, input: &ResendInput) -> CoreResult<PhoneNumber> {
    let mut errors = FieldErrors::default();
    let named = errors.check(username(core, &input.username, "username"));
    let phone = errors.check(username(core, &input.phone, "phone"));
    if let (Some(named), Some(phone)) = (&named, &phone)
        && named != phone
    {
        errors.push(FieldError::new(
            "phone",
            "mismatch",
            "phone must be the same number as username",
        ));
    }
    errors.finish()?;
    checked(phone)
}

/// The email of verifyEmail.
pub fn email(field: &Field<String>) -> CoreResult<EmailAddress> {
    required_text(field, "email")
        .and_then(|e| EmailAddress::parse(&e).map_err(|invalid| FieldError::on("email", invalid)))
        .map_err(|e| CoreError::Validation(vec![e]))
}
