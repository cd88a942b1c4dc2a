//! Request extractors whose rejections are `ApiError`s, so a bad body or
//! query string gets the JSON error shape, never axum's plain text.
use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{HeaderMap, StatusCode, header, request::Parts},
};
use serde::de::DeserializeOwned;

use super::error::ApiError;

pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        require_json_content_type(request.headers())?;
        let bytes = read_body(request, state).await?;
        parse_json_object(&bytes).map(ApiJson)
    }
}

pub fn require_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType {
            expected: "application/json",
        })
    }
}

pub async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::MalformedJson(rejection.body_text())
            }
        })
}

pub fn parse_json_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::MalformedJson(explain_syntax(bytes, &e)))?;
    if !value.is_object() {
        return Err(ApiError::field(
            "body",
            "not_an_object",
            "the request body must be a JSON object",
        ));
    }
    serde_json::from_value(value).map_err(|e| ApiError::MalformedJson(e.to_string()))
}

/// serde's message (line, column), plus what to change where the mistake is
/// a common one: the legacy samples have both.
fn explain_syntax(bytes: &[u8], error: &serde_json::Error) -> String {
    let mut message = error.to_string();
    let text = String::from_utf8_lossy(bytes);
    let line = text
        .lines()
        .nth(error.line().saturating_sub(1))
        .unwrap_or_default();
    if ['\u{201c}', '\u{201d}', '\u{2018}', '\u{2019}']
        .iter()
        .any(|quote| line.contains(*quote))
    {
        message.push_str("; typographic quotes (“ ” ‘ ’) are not JSON quotes: use \"");
    } else if number_with_leading_zero(line) {
        message.push_str(
            "; a number cannot start with 0 in JSON: send phone numbers and ids as strings, \
             e.g. \"phone\": \"081234567890\"",
        );
    }
    message
}

/// `"phone":0812…` or `"accountGroupId":01` on this line.
fn number_with_leading_zero(line: &str) -> bool {
    line.split(':').skip(1).any(|value| {
        let value = value.trim_start();
        let mut digits = value.chars();
        digits.next() == Some('0') && digits.next().is_some_and(|c| c.is_ascii_digit())
    })
}

/// Query-string parameters; a malformed query string is a 400.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|rejection| ApiError::field("query", "malformed_query", rejection.body_text()))
    }
}
