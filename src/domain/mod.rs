//! Validated values. Each type can only be built by its `parse`, so holding
//! one proves the rule was checked; the core never re-validates.
pub mod field;
mod password;
mod person;
mod phone;
pub mod secrets;

pub use field::{Field, FieldErrors};
pub use password::{MIN_PASSWORD_CHARS, NewPassword};
pub use person::{
    AccountGroupId, BirthDate, CountryId, EmailAddress, Language, PersonName, SourceId,
};
pub use phone::PhoneNumber;
pub use secrets::{Md5PasswordHex, PREFIX_ALPHABET, SmsCode};
