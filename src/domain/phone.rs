use std::fmt;

use rlibphonenumber::{PHONE_NUMBER_UTIL, PhoneNumberFormat, Region};

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
        // A region without a numbering plan (`ZZ`, a typo) reads no
        // national number; an international one needs none.
        let region = Region::from_code(region).ok();
        let number = PHONE_NUMBER_UTIL.parse(input, region).map_err(|_| {
            Invalid::new(
                "invalid_phone",
                "is not a phone number; write it as 0812... or +62812...",
            )
        })?;
        // E.164 has no extensions: keeping the number without it would
        // send the codes to a switchboard, not to the customer.
        if number
            .extension
            .as_deref()
            .is_some_and(|ext| !ext.is_empty())
        {
            return Err(Invalid::new(
                "invalid_phone",
                "has an extension; give the number that reaches the phone itself",
            ));
        }
        if !PHONE_NUMBER_UTIL.is_valid_number(&number) {
            return Err(Invalid::new(
                "invalid_phone",
                "is not a valid number in its numbering plan",
            ));
        }
        Ok(Self(
            PHONE_NUMBER_UTIL
                .format(&number, PhoneNumberFormat::E164)
                .into_owned(),
        ))
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
        let Ok(number) = PHONE_NUMBER_UTIL.parse(&self.0, None) else {
            return self.masked();
        };
        let formatted = PHONE_NUMBER_UTIL.format(&number, PhoneNumberFormat::International);
        let country_digits = number.country_code.to_string().len();
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

    /// The ISO region the number belongs to (`ID` for +62...). Most
    /// country codes belong to one region, which the code alone names;
    /// parsing the number again, which only codes shared by several
    /// regions need (+1, +7, +44, ...), three times a register was a
    /// fiftieth of its instructions with the library of then
    /// (docs/PERFORMANCE.md, session 24), and is still a parse saved.
    pub fn region(&self) -> Option<String> {
        let mut regions = self.regions_of_country_code()?;
        let region = match regions.len() {
            1 => regions.next()?,
            _ => PHONE_NUMBER_UTIL
                .get_region_for_number(&PHONE_NUMBER_UTIL.parse(&self.0, None).ok()?)?,
        };
        // "001" (international services) is no region.
        (region != Region::World).then(|| region.as_region_str().to_string())
    }

    /// The regions of the number's country code: E.164 country codes are
    /// prefix-free, so the first one to three digits that are one are it.
    fn regions_of_country_code(&self) -> Option<impl ExactSizeIterator<Item = Region>> {
        let digits = self.0.strip_prefix('+')?;
        (1..=3).find_map(|length| {
            let code: i32 = digits.get(..length)?.parse().ok()?;
            PHONE_NUMBER_UTIL.get_regions_for_country_calling_code(code)
        })
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
    fn masks_middle_digits() {
        let phone = PhoneNumber::from_stored("+6281234567890".into());
        assert_eq!(phone.masked(), "+62*******7890");
        assert_eq!(phone.masked_for_display(), "+62 812-****-7890");
        assert_eq!(phone.region().as_deref(), Some("ID"));
    }

    /// The region read off the country code is the one the crate derives
    /// from the whole number, for codes of one region and of several.
    #[test]
    fn region_is_the_crates_whatever_the_country_code() {
        for (e164, region) in [
            ("+6281234567890", Some("ID")),
            ("+393331234567", Some("IT")),
            ("+33612345678", Some("FR")),
            ("+819012345678", Some("JP")),
            ("+85291234567", Some("HK")),
            ("+971501234567", Some("AE")),
            ("+12025550123", Some("US")),
            ("+16137827274", Some("CA")),
            ("+13459492311", Some("KY")),
            ("+447400123456", Some("GB")),
            ("+79161234567", Some("RU")),
            ("+77011234567", Some("KZ")),
            ("+61406823897", Some("AU")),
            ("+80012340000", None),
        ] {
            let phone = PhoneNumber::from_stored(e164.to_owned());
            let number = PHONE_NUMBER_UTIL.parse(e164, None).unwrap();
            let crates = PHONE_NUMBER_UTIL
                .get_region_for_number(&number)
                .filter(|region| *region != Region::World)
                .map(|region| region.as_region_str().to_string());
            assert_eq!(phone.region(), crates, "{e164}");
            assert_eq!(phone.region().as_deref(), region, "{e164}");
        }
    }

    /// Every line of tests/fixtures/phone-cases.tsv read as Google's
    /// libphonenumber reads it (the file's script says how it is made):
    /// every region's numbers written four ways, and random digits after
    /// the prefixes people type.
    #[test]
    fn reads_numbers_as_googles_libphonenumber_does() {
        let cases = include_str!("../../tests/fixtures/phone-cases.tsv");
        let (mut read, mut valid, mut differ) = (0, 0, Vec::new());
        for line in cases.lines().filter(|line| !line.starts_with('#')) {
            let [region, input, e164] = line.split('\t').collect::<Vec<_>>()[..] else {
                panic!("not region, input and E.164: {line:?}");
            };
            let ours = PhoneNumber::parse(input, region)
                .map(|p| p.0)
                .unwrap_or_default();
            if ours != e164 {
                differ.push(format!("{input:?} in {region}: {ours:?}, not {e164:?}"));
            }
            read += 1;
            valid += usize::from(!e164.is_empty());
        }
        assert!(read > 5000 && valid > 1500, "{read} cases, {valid} valid");
        assert!(
            differ.is_empty(),
            "{} of {read} differ:\n{}",
            differ.len(),
            differ.join("\n")
        );
    }

    /// What the numbering plans make of what people type, pinned: a change
    /// of the phone library or of its metadata that reads any of these
    /// differently fails here, not in a customer's registration.
    #[test]
    fn reads_what_people_type_as_the_numbering_plans_say() {
        for (input, region, e164) in [
            ("081234567890", "ID", Some("+6281234567890")),
            ("0812-3456-7890", "ID", Some("+6281234567890")),
            ("(0812) 3456.7890", "ID", Some("+6281234567890")),
            ("+62 812 3456 7890", "ID", Some("+6281234567890")),
            // An international number ignores the region.
            ("+62 812-3456-7890", "US", Some("+6281234567890")),
            // A full-width plus, as some phone keyboards type it.
            ("\u{FF0B}62 812 3456 7890", "ID", Some("+6281234567890")),
            ("tel:+62-812-3456-7890", "ID", Some("+6281234567890")),
            // The country code without a plus, and the trunk 0 left out.
            ("6281234567890", "ID", Some("+6281234567890")),
            ("81234567890", "ID", Some("+6281234567890")),
            // Indonesia dials abroad with 001, 007, 008 or 009, not 00.
            ("0062 812 3456 7890", "ID", None),
            ("021 5150 1234", "ID", Some("+622151501234")),
            ("+62 21 5150 1234", "US", Some("+622151501234")),
            // Italian numbers keep the national leading zero after +39.
            ("06 6982 0000", "IT", Some("+390669820000")),
            ("333 123 4567", "IT", Some("+393331234567")),
            ("(202) 555-0123", "US", Some("+12025550123")),
            ("+1 613 782 7274", "ID", Some("+16137827274")),
            ("020 7946 0958", "GB", Some("+442079460958")),
            ("07400 123456", "GB", Some("+447400123456")),
            ("8 (916) 123-45-67", "RU", Some("+79161234567")),
            ("+7 701 123 4567", "ID", Some("+77011234567")),
            ("090-1234-5678", "JP", Some("+819012345678")),
            ("0412 345 678", "AU", Some("+61412345678")),
            ("+800 1234 0000", "ID", Some("+80012340000")),
            ("12", "ID", None),
            ("hello", "ID", None),
            ("0000000000", "ID", None),
            ("+6200", "ID", None),
            ("+62 812", "ID", None),
            ("0812345", "ID", None),
            ("+999 1234 5678", "ID", None),
            ("+1 202 555 01234", "ID", None),
            // A national number needs a region the plans know.
            ("081234567890", "ZZ", None),
            // E.164 has no extension: refused, not dropped.
            ("0812 3456 7890 ext. 12", "ID", None),
            ("+62 812 3456 7890 x9", "ID", None),
            // phonenumber 0.3, the library before this one, read these
            // wrongly (and 6,535 of 200,000 random inputs; docs/
            // PERFORMANCE.md, session 38); the answers are Google
            // libphonenumber's.
            ("+39 06878225", "JP", Some("+3906878225")),
            ("+1 226 348 6989", "RU", Some("+12263486989")),
            ("+44 1179 829799", "FR", Some("+441179829799")),
            ("0062248102", "ID", None),
            ("00620863543", "JP", None),
            ("629593159", "MY", None),
            ("+800 0520 62928", "ZA", None),
        ] {
            let read = PhoneNumber::parse(input, region);
            match e164 {
                Some(e164) => assert_eq!(
                    read.map(|p| p.0).ok().as_deref(),
                    Some(e164),
                    "{input} in {region}"
                ),
                None => assert_eq!(
                    read.map_err(|e| e.code),
                    Err("invalid_phone"),
                    "{input} in {region}"
                ),
            }
        }
    }
}
