//! Validated values and the registration lifecycle. Each value type can only
//! be built by its `parse`, so holding one proves the rule was checked; the
//! core never re-validates. Parsing reports an [`Invalid`] without a field
//! name: the caller knows which field it read and names it.
mod password;
mod person;
mod phone;
pub mod registration;
mod secrets;

pub use password::{MIN_PASSWORD_CHARS, NewPassword, PasswordRejected};
pub use person::{
    AccountGroupId, BirthDate, CountryId, EmailAddress, PersonName, SourceId, choose_language,
    parse_language,
};
pub use phone::PhoneNumber;
pub use registration::{CodeCheck, IssuedCode, Registration, Rules, Sends};
pub use secrets::{Md5PasswordHex, PREFIX_ALPHABET, SmsCode};

/// A value broke a rule: a stable `code` and the rule in words, written to
/// follow the field's name (`"must be in the past"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub code: &'static str,
    pub rule: String,
}

impl Invalid {
    pub fn new(code: &'static str, rule: impl Into<String>) -> Self {
        Self {
            code,
            rule: rule.into(),
        }
    }
}
