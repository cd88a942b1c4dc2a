//! Validated values and the registration lifecycle. Each value type can only
//! be built by its `parse`, so holding one proves the rule was checked; the
//! core never re-validates. Parsing reports an [`Invalid`] without a field
//! name: the caller knows which field it read and names it.
mod autofill;
mod budget;
mod host;
mod password;
mod person;
mod phone;
pub mod registration;
mod secrets;
mod webhook;

pub use autofill::SmsAutofill;
pub use budget::{BudgetMonth, MAX_MONTHLY_SMS, MonthlySmsBudget, WARNING_PERCENT};
pub use host::AuthenticatedHost;
pub use password::{MIN_PASSWORD_CHARS, NewPassword, PasswordRejected};
pub use person::{
    AccountGroupId, BirthDate, CountryId, EmailAddress, PersonName, SourceId, choose_language,
    parse_language,
};
pub use phone::PhoneNumber;
pub use registration::{CodeCheck, IssuedCode, Registration, Rules, Sends};
pub use secrets::{Md5PasswordHex, PREFIX_ALPHABET, SmsCode};
pub use webhook::WebhookUrl;

pub use crate::error::Invalid;
