use std::fmt;

use phonenumber::{Mode, country};

use super::Invalid;

/// A valid phone number in E.164 form (`+6281234567890`): the username.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Parses a number written nationally (`0812...`, read in `region`) or
    /// internationally (`+62 812...`).
    pub fn parse(input: &str, region: &str) -> Result<Self, Invalid> {
        let input = input.trim();
        if input.is_empty() {
            return Err(Invalid::new("required", "is required"));
        }
        if input.len() > 32 {
            return Err(Invalid::new(
                "invalid_phone",
                "is too long to be a phone number",
            ));
        }
        let region: Option<country::Id> = region.parse().ok();
        let number = phonenumber::parse(region, input).map_err(|_| {
            Invalid::new(
                "invalid_phone",
                "is not a phone number; write it as 0812... or +62812...",
            )
        })?;
        if !phonenumber::is_valid(&number) {
            return Err(Invalid::new(
                "invalid_phone",
                "is not a valid number in its numbering plan",
            ));
        }
        // E.164 is the country code and the national number, nothing else;
        // the crate's formatter would also match the country's layout
        // patterns first, a regex search a verify paid for nothing.
        Ok(Self(format!(
            "+{}{}",
            number.code().value(),
            number.national()
        )))
    }

    /// A number read back from the database, where only E.164 is stored.
    pub fn from_stored(e164: String) -> Self {
        Self(e164)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For people: international format with the middle digits hidden,
    /// `+62 812-****-7890`.
    pub fn masked_for_display(&self) -> String {
        let Ok(number) = phonenumber::parse(None, &self.0) else {
            return self.masked();
        };
        let formatted = number.format().mode(Mode::International).to_string();
        let country_digits = number.code().value().to_string().len();
        let total = formatted.chars().filter(char::is_ascii_digit).count();
        let mut seen = 0;
        formatted
            .chars()
            .map(|c| {
                if !c.is_ascii_digit() {
                    return c;
                }
                seen += 1;
                if seen <= country_digits + 3 || seen > total.saturating_sub(4) {
                    c
                } else {
                    '*'
                }
            })
            .collect()
    }

    /// The ISO region the number belongs to (`ID` for +62...).
    pub fn region(&self) -> Option<String> {
        let number = phonenumber::parse(None, &self.0).ok()?;
        number.country().id().map(|id| id.as_ref().to_owned())
    }

    /// For logs: keeps the country code and last 4 digits (`+62******7890`).
    pub fn masked(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        let keep_tail = 4.min(chars.len());
        let keep_head = 3.min(chars.len() - keep_tail);
        chars
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i < keep_head || i >= chars.len() - keep_tail {
                    *c
                } else {
                    '*'
                }
            })
            .collect()
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn national_number_uses_region() {
        let phone = PhoneNumber::parse("081234567890", "ID").unwrap();
        assert_eq!(phone.as_str(), "+6281234567890");
    }

    #[test]
    fn international_number_ignores_region() {
        let phone = PhoneNumber::parse("+62 812-3456-7890", "US").unwrap();
        assert_eq!(phone.as_str(), "+6281234567890");
    }

    #[test]
    fn e164_is_what_the_crate_formats_leading_zeros_included() {
        // Italian numbers keep the national leading zero after +39.
        for (input, region) in [
            ("06 6982 0000", "IT"),
            ("+39 333 123 4567", "ID"),
            ("081234567890", "ID"),
            ("(202) 555-0123", "US"),
            ("+44 20 7946 0958", "ID"),
        ] {
            let ours = PhoneNumber::parse(input, region).unwrap();
            let number = phonenumber::parse(region.parse().ok(), input).unwrap();
            let crates = number.format().mode(Mode::E164).to_string();
            assert_eq!(ours.as_str(), crates, "{input}");
        }
        assert_eq!(
            PhoneNumber::parse("06 6982 0000", "IT").unwrap().as_str(),
            "+390669820000"
        );
    }

    #[test]
    fn rejects_invalid_numbers() {
        for bad in ["12", "hello", "0000000000", "+6200"] {
            let error = PhoneNumber::parse(bad, "ID").unwrap_err();
            assert_eq!(error.code, "invalid_phone", "{bad}");
        }
    }

    #[test]
    fn masks_middle_digits() {
        let phone = PhoneNumber::from_stored("+6281234567890".into());
        assert_eq!(phone.masked(), "+62*******7890");
        assert_eq!(phone.masked_for_display(), "+62 812-****-7890");
        assert_eq!(phone.region().as_deref(), Some("ID"));
    }
}
