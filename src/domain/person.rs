use chrono::NaiveDate;

use crate::error::FieldError;

/// A person's name or a place name: trimmed, 1 to 100 characters, no
/// control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonName(String);

impl PersonName {
    pub fn parse(input: String, field: &str) -> Result<Self, FieldError> {
        let length = input.chars().count();
        if length > 100 {
            return Err(FieldError::new(
                field,
                "too_long",
                format!("{field} must be at most 100 characters"),
            ));
        }
        if input.chars().any(char::is_control) {
            return Err(FieldError::new(
                field,
                "invalid_characters",
                format!("{field} must not contain control characters"),
            ));
        }
        Ok(Self(input))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A date of birth: ISO `YYYY-MM-DD`, after 1900-01-01 and before today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BirthDate(NaiveDate);

impl BirthDate {
    pub fn parse(input: &str, today: NaiveDate, field: &str) -> Result<Self, FieldError> {
        let date = NaiveDate::parse_from_str(input, "%Y-%m-%d")
            .ok()
            .filter(|_| input.len() == 10)
            .ok_or_else(|| {
                FieldError::new(
                    field,
                    "invalid_date",
                    format!("{field} must be a date written YYYY-MM-DD"),
                )
            })?;
        if date >= today {
            return Err(FieldError::new(
                field,
                "not_in_past",
                format!("{field} must be in the past"),
            ));
        }
        if date < NaiveDate::from_ymd_opt(1900, 1, 1).expect("valid date") {
            return Err(FieldError::new(
                field,
                "too_early",
                format!("{field} must be 1900-01-01 or later"),
            ));
        }
        Ok(Self(date))
    }

    pub fn into_inner(self) -> NaiveDate {
        self.0
    }
}

/// An ISO 3166-1 alpha-2 country code, upper case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountryId(String);

impl CountryId {
    pub fn parse(input: &str, field: &str) -> Result<Self, FieldError> {
        let code = input.trim().to_ascii_uppercase();
        if code.len() == 2 && isocountry::CountryCode::for_alpha2(&code).is_ok() {
            Ok(Self(code))
        } else {
            Err(FieldError::new(
                field,
                "invalid_country",
                format!("{field} must be an ISO 3166-1 alpha-2 country code such as ID"),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address, syntax-checked, stored lower-case so that uniqueness
/// does not depend on how a client capitalised it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(input: &str, field: &str) -> Result<Self, FieldError> {
        let normalised = input.trim().to_lowercase();
        let invalid = || {
            FieldError::new(
                field,
                "invalid_email",
                format!("{field} is not a valid email address"),
            )
        };
        if normalised.len() > 254 {
            return Err(invalid());
        }
        let parsed: email_address::EmailAddress = normalised.parse().map_err(|_| invalid())?;
        // Display names ("Ann <a@b.c>") and domain-less forms are not addresses
        // a registration can send to.
        if parsed.email() != normalised || !parsed.domain().contains('.') {
            return Err(invalid());
        }
        Ok(Self(normalised))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For logs: `a***@example.com`.
    pub fn masked(&self) -> String {
        match self.0.split_once('@') {
            Some((local, domain)) => {
                format!("{}***@{domain}", local.chars().next().unwrap_or('*'))
            }
            None => "***".into(),
        }
    }
}

/// An identifier chosen by a host or the operator: 1 to `max` characters of
/// letters, digits, `-` and `_`.
fn parse_identifier(input: &str, max: usize, field: &str) -> Result<String, FieldError> {
    let valid = !input.is_empty()
        && input.len() <= max
        && input
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(input.to_owned())
    } else {
        Err(FieldError::new(
            field,
            "invalid_identifier",
            format!("{field} must be 1 to {max} letters, digits, '-' or '_'"),
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceId(String);

impl SourceId {
    pub fn parse(input: &str, field: &str) -> Result<Self, FieldError> {
        parse_identifier(input, 32, field).map(Self)
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountGroupId(String);

impl AccountGroupId {
    pub fn parse(input: &str, field: &str) -> Result<Self, FieldError> {
        parse_identifier(input, 16, field).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()
    }

    #[test]
    fn birth_date_must_be_iso_and_past() {
        assert!(BirthDate::parse("1990-12-31", today(), "birthDate").is_ok());
        for (input, code) in [
            ("31-12-1990", "invalid_date"),
            ("1990-2-3", "invalid_date"),
            ("1990-02-30", "invalid_date"),
            ("2026-11-24", "not_in_past"),
            ("2030-01-01", "not_in_past"),
            ("1899-12-31", "too_early"),
        ] {
            let error = BirthDate::parse(input, today(), "birthDate").unwrap_err();
            assert_eq!(error.code, code, "{input}");
        }
    }

    #[test]
    fn country_is_alpha2() {
        assert_eq!(CountryId::parse("id", "countryId").unwrap().as_str(), "ID");
        for bad in ["IDN", "XX", "", "1"] {
            assert!(CountryId::parse(bad, "countryId").is_err(), "{bad}");
        }
    }

    #[test]
    fn email_is_normalised_and_checked() {
        let email = EmailAddress::parse(" Email@Gmail.COM ", "email").unwrap();
        assert_eq!(email.as_str(), "email@gmail.com");
        assert_eq!(email.masked(), "e***@gmail.com");
        for bad in ["nope", "a@b", "Ann <a@b.co>", "a@@b.co", "@b.co"] {
            assert!(EmailAddress::parse(bad, "email").is_err(), "{bad}");
        }
    }

    #[test]
    fn identifiers_are_restricted() {
        assert!(AccountGroupId::parse("01", "accountGroupId").is_ok());
        assert!(AccountGroupId::parse("0 1", "accountGroupId").is_err());
        assert!(SourceId::parse(&"9".repeat(33), "sourceId").is_err());
    }
}

/// The language of a customer's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Id,
    En,
}

impl Language {
    pub const ALL: [Language; 2] = [Language::Id, Language::En];

    /// Accepts `id`/`en` and regional forms (`id-ID`, `en_US`), any case.
    pub fn parse(input: &str, field: &str) -> Result<Self, FieldError> {
        let primary = input
            .trim()
            .split(['-', '_'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match primary.as_str() {
            "id" => Ok(Self::Id),
            "en" => Ok(Self::En),
            _ => Err(FieldError::new(
                field,
                "unsupported_language",
                format!("{field} must be id (Bahasa Indonesia) or en (English)"),
            )),
        }
    }

    /// The language asked for, else the country's, else the default.
    pub fn choose(requested: Option<Language>, country: &CountryId, default: Language) -> Language {
        requested.unwrap_or(if country.as_str() == "ID" {
            Language::Id
        } else {
            default
        })
    }

    pub fn code(self) -> &'static str {
        match self {
            Language::Id => "id",
            Language::En => "en",
        }
    }

    /// A stored code read back; anything unknown falls back to English.
    pub fn from_stored(code: &str) -> Self {
        Self::parse(code, "language").unwrap_or(Language::En)
    }
}
