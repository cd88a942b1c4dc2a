//! Errors as GraphQL reports them: the message, and in `extensions` the
//! same `code` and HTTP `status` a REST client would get, plus `details`,
//! `attemptsRemaining` and `retryAfterSeconds` where they apply.
use async_graphql::ErrorExtensionValues;

use crate::{
    error::CoreError,
    http::error::{ApiError, FieldErrorBody},
};

impl From<CoreError> for async_graphql::Error {
    fn from(error: CoreError) -> Self {
        graphql_error(&ApiError::Core(error))
    }
}

pub fn graphql_error(error: &ApiError) -> async_graphql::Error {
    error.log();
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", error.code());
    extensions.set("status", error.status().as_u16());
    let details: Vec<FieldErrorBody<'_>> = error
        .field_errors()
        .iter()
        .map(FieldErrorBody::from)
        .collect();
    if !details.is_empty()
        && let Ok(details) = async_graphql::to_value(&details)
    {
        extensions.set("details", details);
    }
    if let Some(remaining) = error.attempts_remaining() {
        extensions.set("attemptsRemaining", remaining);
    }
    if let Some(seconds) = error.retry_after_seconds() {
        extensions.set("retryAfterSeconds", seconds);
    }
    let mut gql = async_graphql::Error::new(error.to_string());
    gql.extensions = Some(extensions);
    gql
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::error::tests::every_error;

    /// Every error as GraphQL reports it in `errors[]`.
    #[test]
    fn graphql_error_contract() {
        let errors: Vec<async_graphql::ServerError> = every_error()
            .iter()
            .map(|e| graphql_error(e).into_server_error(Default::default()))
            .collect();
        insta::assert_json_snapshot!(errors);
    }
}
