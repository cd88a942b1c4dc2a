//! GraphQL input objects; each builds the core's input directly.
use async_graphql::InputObject;

use crate::service::registration::{
    ConfirmInput, Field, RegisterInput as CoreRegisterInput, ResendInput as CoreResendInput,
};

/// Customer data for a new registration; the same fields and rules as
/// `POST /b2b/customer/register`.
#[derive(InputObject)]
pub struct RegisterInput {
    /// Phone number, national (read in `countryId`) or international.
    pub phone: String,
    pub name: String,
    /// Date of birth, `YYYY-MM-DD`.
    pub birth_date: String,
    pub birth_place: String,
    pub email: Option<String>,
    pub gender: bool,
    /// ISO 3166-1 alpha-2 country code, e.g. `ID`.
    pub country_id: String,
    pub source_id: Option<String>,
    pub account_group_id: String,
    /// Language of the SMS and email: `id` or `en`. Default: `id` for
    /// country `ID`, else the configured default.
    pub language: Option<String>,
}

impl From<RegisterInput> for CoreRegisterInput {
    fn from(input: RegisterInput) -> Self {
        Self {
            phone: Field::Present(input.phone),
            name: Field::Present(input.name),
            birth_date: Field::Present(input.birth_date),
            birth_place: Field::Present(input.birth_place),
            email: input.email.into(),
            gender: Field::Present(input.gender),
            country_id: Field::Present(input.country_id),
            source_id: input.source_id.into(),
            account_group_id: Field::Present(input.account_group_id),
            language: input.language.into(),
        }
    }
}

#[derive(InputObject)]
pub struct ConfirmRegistrationInput {
    /// The customer's username: the phone number.
    pub username: String,
    /// MD5 of the password as 32 hex characters (either case).
    #[graphql(secret)]
    pub password: String,
    /// The token from the SMS: prefix then digits, e.g. `UHY1234`.
    #[graphql(secret)]
    pub token: String,
}

impl From<ConfirmRegistrationInput> for ConfirmInput {
    fn from(input: ConfirmRegistrationInput) -> Self {
        Self {
            username: Field::Present(input.username),
            password: Field::Present(input.password),
            token: Field::Present(input.token),
        }
    }
}

/// Names a pending registration: both fields are the same phone number.
#[derive(InputObject)]
pub struct ResendInput {
    pub username: String,
    pub phone: String,
}

impl From<ResendInput> for CoreResendInput {
    fn from(input: ResendInput) -> Self {
        Self {
            username: Field::Present(input.username),
            phone: Field::Present(input.phone),
        }
    }
}
