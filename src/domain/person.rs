use chrono::{Datelike, NaiveDate};
use entity::states::Language;

use super::Invalid;

/// A person's name or a place name: trimmed, 1 to 100 characters, no
/// control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonName(String);

impl PersonName {
    pub fn parse(input: String) -> Result<Self, Invalid> {
        let length = input.chars().count();
        if length > 100 {
            return Err(Invalid::new("too_long", "must be at most 100 characters"));
        }
        if input.chars().any(char::is_control) {
            return Err(Invalid::new(
                "invalid_characters",
                "must not contain control characters",
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
    pub fn parse(input: &str, today: NaiveDate) -> Result<Self, Invalid> {
        let date = NaiveDate::parse_from_str(input, "%Y-%m-%d")
            .ok()
            .filter(|_| input.len() == 10)
            .ok_or_else(|| Invalid::new("invalid_date", "must be a date written YYYY-MM-DD"))?;
        if date >= today {
            return Err(Invalid::new("not_in_past", "must be in the past"));
        }
        if date.year() < 1900 {
            return Err(Invalid::new("too_early", "must be 1900-01-01 or later"));
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
    pub fn parse(input: &str) -> Result<Self, Invalid> {
        let code = input.trim().to_ascii_uppercase();
        if code.len() == 2 && isocountry::CountryCode::for_alpha2(&code).is_ok() {
            Ok(Self(code))
        } else {
            Err(Invalid::new(
                "invalid_country",
                "must be an ISO 3166-1 alpha-2 country code such as ID",
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
    pub fn parse(input: &str) -> Result<Self, Invalid> {
        let normalised = input.trim().to_lowercase();
        let invalid = || Invalid::new("invalid_email", "is not a valid email address");
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
fn parse_identifier(input: &str, max: usize) -> Result<String, Invalid> {
    let valid = !input.is_empty()
        && input.len() <= max
        && input
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(input.to_owned())
    } else {
        Err(Invalid::new(
            "invalid_identifier",
            format!("must be 1 to {max} letters, digits, '-' or '_'"),
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceId(String);

impl SourceId {
    pub fn parse(input: &str) -> Result<Self, Invalid> {
        parse_identifier(input, 32).map(Self)
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountGroupId(String);

impl AccountGroupId {
    pub fn parse(input: &str) -> Result<Self, Invalid> {
        parse_identifier(input, 16).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Accepts `id`/`en` and regional forms (`id-ID`, `en_US`), any case.
pub fn parse_language(input: &str) -> Result<Language, Invalid> {
    let primary = input
        .trim()
        .split(['-', '_'])
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match primary.as_str() {
        "id" => Ok(Language::Id),
        "en" => Ok(Language::En),
        _ => Err(Invalid::new(
            "unsupported_language",
            "must be id (Bahasa Indonesia) or en (English)",
        )),
    }
}

/// The language asked for, else the country's, else the default.
pub fn choose_language(
    requested: Option<Language>,
    country: &CountryId,
    default: Language,
) -> Language {
    requested.unwrap_or(if country.as_str() == "ID" {
        Language::Id
    } else {
        default
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()
    }

    #[test]
    fn birth_date_must_be_iso_and_past() {
        assert!(BirthDate::parse("1990-12-31", today()).is_ok());
        for (input, code) in [
            ("31-12-1990", "invalid_date"),
            ("1990-2-3", "invalid_date"),
            ("1990-02-30", "invalid_date"),
            ("2026-11-24", "not_in_past"),
            ("2030-01-01", "not_in_past"),
            ("1899-12-31", "too_early"),
        ] {
            let error = BirthDate::parse(input, today()).unwrap_err();
            assert_eq!(error.code, code, "{input}");
        }
    }

    #[test]
    fn country_is_alpha2() {
        assert_eq!(CountryId::parse("id").unwrap().as_str(), "ID");
        for bad in ["IDN", "XX", "", "1"] {
            assert!(CountryId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn email_is_normalised_and_checked() {
        let email = EmailAddress::parse(" Email@Gmail.COM ").unwrap();
        assert_eq!(email.as_str(), "email@gmail.com");
        assert_eq!(email.masked(), "e***@gmail.com");
        for bad in ["nope", "a@b", "Ann <a@b.co>", "a@@b.co", "@b.co"] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn identifiers_are_restricted() {
        assert!(AccountGroupId::parse("01").is_ok());
        assert!(AccountGroupId::parse("0 1").is_err());
        assert!(SourceId::parse(&"9".repeat(33)).is_err());
    }
}
