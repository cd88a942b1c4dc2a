use std::fmt;

use md5::{Digest, Md5};

use super::Invalid;

/// The MD5 hex of a password as the legacy clients send it, canonicalised to
/// upper case. Its `Debug` never prints the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Md5PasswordHex(String);

impl Md5PasswordHex {
    pub fn parse(input: &str) -> Result<Self, Invalid> {
        if input.len() == 32 && input.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(input.to_ascii_uppercase()))
        } else {
            Err(Invalid::new(
                "invalid_password_hash",
                "must be the MD5 of the password: 32 hexadecimal characters",
            ))
        }
    }

    /// The MD5 of a password typed on our own page, as a legacy client
    /// would have computed it.
    pub fn of_password(password: &str) -> Self {
        let digest = Md5::digest(password.as_bytes());
        Self(digest.iter().map(|b| format!("{b:02X}")).collect())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Md5PasswordHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Md5PasswordHex([redacted])")
    }
}

/// Letters that cannot be mistaken for digits or each other (no I, L, O).
pub const PREFIX_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ";

/// An SMS token: a 3-letter prefix naming the SMS, then secret digits
/// (`UHY1234`). The prefix is case-insensitive.
#[derive(Clone, PartialEq, Eq)]
pub struct SmsCode {
    prefix: String,
    digits: String,
}

impl SmsCode {
    pub fn parse(input: &str) -> Result<Self, Invalid> {
        let input = input.trim();
        let invalid = || {
            Invalid::new(
                "invalid_token_format",
                "must be the 3-letter prefix followed by 4 to 8 digits, as in the SMS",
            )
        };
        if !input.is_ascii() || !(3 + 4..=3 + 8).contains(&input.len()) {
            return Err(invalid());
        }
        let (prefix, code) = input.split_at(3);
        let prefix = prefix.to_ascii_uppercase();
        if !prefix.bytes().all(|b| b.is_ascii_uppercase())
            || !code.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(invalid());
        }
        Ok(Self {
            prefix,
            digits: code.to_owned(),
        })
    }

    /// Builds a code from freshly generated parts.
    pub fn from_parts(prefix: String, digits: String) -> Self {
        Self { prefix, digits }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The whole token as the customer types it; only for the SMS text.
    pub fn expose(&self) -> String {
        format!("{}{}", self.prefix, self.digits)
    }
}

impl fmt::Debug for SmsCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SmsCode({}[redacted])", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_is_canonicalised_to_upper_case() {
        let hex = Md5PasswordHex::parse("5f4dcc3b5aa765d61d8327deb882cf99").unwrap();
        assert_eq!(hex.expose(), "5F4DCC3B5AA765D61D8327DEB882CF99");
        assert!(!format!("{hex:?}").contains("5F4D"));
        assert!(Md5PasswordHex::parse("password").is_err());
        assert!(Md5PasswordHex::parse(&"G".repeat(32)).is_err());
    }

    #[test]
    fn sms_code_prefix_is_case_insensitive() {
        let code = SmsCode::parse("uhY1234").unwrap();
        assert_eq!(code.expose(), "UHY1234");
        assert!(!format!("{code:?}").contains("1234"));
        for bad in ["UHY123", "UHY123456789", "U1Y1234", "UHYABCD", "ÜHY1234"] {
            assert!(SmsCode::parse(bad).is_err(), "{bad}");
        }
    }
}
