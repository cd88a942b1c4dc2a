//! Every HTTP error response is built here: the core's errors and the
//! failures only HTTP has (malformed bodies, media types, unknown routes,
//! OAuth request errors, idempotency keys) get one JSON shape, a status
//! and their headers. GraphQL reuses the codes and statuses.
use axum::{
    Json,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{AuthFailure, CoreError, FieldError};

/// A failed HTTP request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the request body must be sent as {expected}")]
    UnsupportedMediaType { expected: &'static str },
    #[error("the request body is larger than the limit")]
    PayloadTooLarge,
    #[error("batched GraphQL requests are not accepted; send one operation per request")]
    BatchNotSupported,
    #[error("{0}")]
    GraphqlPolicy(String),
    #[error("no such path")]
    RouteNotFound,
    #[error("this path does not accept the method")]
    MethodNotAllowed,
    #[error("grant_type must be client_credentials")]
    UnsupportedGrantType,
    #[error("{0}")]
    InvalidOauthRequest(&'static str),
    /// Client authentication in the form failed: RFC 6749 §5.2 keeps 401
    /// and its challenge for HTTP Basic (a browser would prompt for it).
    #[error("client authentication failed")]
    InvalidClientInForm,
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still being processed")]
    IdempotencyInProgress,
    #[error("no SMS provider is configured under this name")]
    UnknownSmsProvider,
    #[error("{0}")]
    ReceiptSignatureInvalid(&'static str),
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        Self::Core(CoreError::from(error))
    }
}

impl ApiError {
    pub fn field(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        Self::Core(CoreError::field(field, code, message))
    }

    /// Stable, machine-readable code shared by REST and GraphQL.
    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            Core(error) => error.code(),
            MalformedJson(_) => "MALFORMED_JSON",
            UnsupportedMediaType { .. } => "UNSUPPORTED_MEDIA_TYPE",
            PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            BatchNotSupported => "BATCH_NOT_SUPPORTED",
            GraphqlPolicy(_) => "GRAPHQL_POLICY_VIOLATION",
            RouteNotFound => "ROUTE_NOT_FOUND",
            MethodNotAllowed => "METHOD_NOT_ALLOWED",
            UnsupportedGrantType => "UNSUPPORTED_GRANT_TYPE",
            InvalidOauthRequest(_) => "INVALID_REQUEST",
            InvalidClientInForm => "INVALID_CLIENT",
            IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            IdempotencyInProgress => "IDEMPOTENCY_REQUEST_IN_PROGRESS",
            UnknownSmsProvider => "UNKNOWN_SMS_PROVIDER",
            ReceiptSignatureInvalid(_) => "INVALID_SIGNATURE",
        }
    }

    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            Core(error) => core_status(error),
            MalformedJson(_) | BatchNotSupported | GraphqlPolicy(_) => StatusCode::BAD_REQUEST,
            UnsupportedGrantType | InvalidOauthRequest(_) | InvalidClientInForm => {
                StatusCode::BAD_REQUEST
            }
            UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RouteNotFound | UnknownSmsProvider => StatusCode::NOT_FOUND,
            ReceiptSignatureInvalid(_) => StatusCode::UNAUTHORIZED,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            IdempotencyInProgress => StatusCode::CONFLICT,
            IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    pub fn retry_after_seconds(&self) -> Option<u64> {
        match self {
            ApiError::Core(error) => error.retry_after_seconds(),
            ApiError::IdempotencyInProgress => Some(1),
            _ => None,
        }
    }

    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            ApiError::Core(error) => error.field_errors(),
            _ => &[],
        }
    }

    pub fn attempts_remaining(&self) -> Option<u32> {
        match self {
            ApiError::Core(error) => error.attempts_remaining(),
            _ => None,
        }
    }

    pub fn log(&self) {
        match self {
            ApiError::Core(error) => error.log(),
            other => tracing::debug!(code = other.code(), "request refused"),
        }
    }

    fn body(&self) -> ErrorBody<'_> {
        let oauth_error = match self {
            ApiError::Core(CoreError::InvalidClient) | ApiError::InvalidClientInForm => {
                Some("invalid_client")
            }
            ApiError::UnsupportedGrantType => Some("unsupported_grant_type"),
            ApiError::InvalidOauthRequest(_) => Some("invalid_request"),
            _ => None,
        };
        ErrorBody {
            code: self.code(),
            message: self.to_string(),
            details: self
                .field_errors()
                .iter()
                .map(FieldErrorBody::from)
                .collect(),
            attempts_remaining: self.attempts_remaining(),
            retry_after_seconds: self.retry_after_seconds(),
            error: oauth_error,
            error_description: oauth_error.map(|_| self.to_string()),
        }
    }
}

/// The status a core error answers with, over REST and in GraphQL's
/// `extensions.status`.
pub fn core_status(error: &CoreError) -> StatusCode {
    use CoreError::*;
    match error {
        Validation(_) => StatusCode::BAD_REQUEST,
        RegistrationNotFound
        | CompletionLinkInvalid
        | MessageNotFound
        | WebhookDeliveryNotFound => StatusCode::NOT_FOUND,
        // RFC 6750 §3.1: a malformed request is a 400, a bad token a 401.
        Unauthenticated(AuthFailure::MalformedHeader) => StatusCode::BAD_REQUEST,
        Unauthenticated(_) | InvalidClient => StatusCode::UNAUTHORIZED,
        UsernameTaken | EmailTaken | RegistrationCompleted => StatusCode::CONFLICT,
        RegistrationLocked | PhoneLocked { .. } => StatusCode::LOCKED,
        TokenExpired | CompletionLinkExpired => StatusCode::GONE,
        TokenInvalid { .. } | TokenSuperseded | NoEmailOnRegistration => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        ResendTooSoon { .. }
        | ResendLimitReached { .. }
        | SendQuotaExceeded { .. }
        | RateLimited { .. }
        | RegisterTooSoon { .. } => StatusCode::TOO_MANY_REQUESTS,
        ServerBusy { .. } | DatabaseUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The JSON error shape of every REST response (and of `/oauth/token`,
/// which adds the RFC 6749 `error` and `error_description` members).
/// The codes are listed in `docs/ERRORS.md`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody<'a> {
    /// Stable, machine-readable; clients match on it. Never renamed.
    #[schema(example = "VALIDATION_FAILED")]
    pub code: &'static str,
    /// For people; may change.
    #[schema(example = "the request has invalid fields")]
    pub message: String,
    /// Only with `VALIDATION_FAILED`: every bad field at once.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldErrorBody<'a>>,
    /// Only with `TOKEN_INVALID`: wrong codes still allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub attempts_remaining: Option<u32>,
    /// When sending the same request later may succeed: after this many
    /// seconds, also sent as the `Retry-After` header.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub retry_after_seconds: Option<u64>,
    /// RFC 6749 §5.2 error code; only from `/oauth/token` (`invalid_client`,
    /// `unsupported_grant_type`, `invalid_request`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, value_type = Option<String>)]
    pub error: Option<&'static str>,
    /// RFC 6749 §5.2 spells it in snake case, unlike our own members.
    /// Present with `error`; the same text as `message`.
    #[serde(rename = "error_description", skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error_description: Option<String>,
}

/// One entry of `details`.
#[derive(Serialize, ToSchema)]
pub struct FieldErrorBody<'a> {
    /// The API's name of the field (`birthDate`, `countryId`), or `body`,
    /// `query`, `Idempotency-Key`.
    #[schema(example = "birthDate")]
    pub field: &'a str,
    /// What is wrong with it (`required`, `invalid_type`, ...).
    #[schema(example = "invalid_date")]
    pub code: &'static str,
    /// For people; may change.
    #[schema(example = "birthDate must be a date written YYYY-MM-DD")]
    pub message: &'a str,
}

impl<'a> From<&'a FieldError> for FieldErrorBody<'a> {
    fn from(f: &'a FieldError) -> Self {
        Self {
            field: &f.field,
            code: f.code,
            message: &f.message,
        }
    }
}

impl ApiError {
    /// The headers that go with the error: `Retry-After`, and the RFC 6750
    /// or RFC 6749 challenge of an authentication failure.
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(seconds) = self.retry_after_seconds() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        match self {
            ApiError::Core(CoreError::Unauthenticated(failure)) => {
                let value = bearer_challenge(*failure);
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            ApiError::Core(CoreError::InvalidClient) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Basic realm="customer-registration""#),
                );
            }
            _ => {}
        }
        headers
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let headers = self.headers();
        let mut response = (self.status(), Json(self.body())).into_response();
        response.headers_mut().extend(headers);
        response
    }
}

impl IntoResponse for CoreError {
    fn into_response(self) -> Response {
        ApiError::Core(self).into_response()
    }
}

/// RFC 6750 §3: a request without credentials gets a bare challenge; one
/// with a bad token learns why.
fn bearer_challenge(failure: AuthFailure) -> String {
    match failure {
        AuthFailure::MissingToken => r#"Bearer realm="customer-registration""#.to_owned(),
        AuthFailure::MalformedHeader => format!(
            r#"Bearer realm="customer-registration", error="invalid_request", error_description="{}""#,
            failure.description()
        ),
        other => format!(
            r#"Bearer realm="customer-registration", error="invalid_token", error_description="{}""#,
            other.description()
        ),
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
pub(crate) mod tests {
    use axum::body::to_bytes;
    use entity::states::Channel;

    use super::*;
    use crate::error::{LimitedOperation, QuotaScope};

    /// One of every error, as the edge can meet it.
    pub(crate) fn every_error() -> Vec<ApiError> {
        let core = [
            CoreError::Validation(vec![
                FieldError::new("phone", "required", "phone is required"),
                FieldError::new("birthDate", "not_in_past", "birthDate must be in the past"),
            ]),
            CoreError::Unauthenticated(AuthFailure::MissingToken),
            CoreError::Unauthenticated(AuthFailure::Expired),
            CoreError::Unauthenticated(AuthFailure::MalformedHeader),
            CoreError::InvalidClient,
            CoreError::UsernameTaken,
            CoreError::EmailTaken,
            CoreError::RegistrationNotFound,
            CoreError::MessageNotFound,
            CoreError::RegistrationCompleted,
            CoreError::RegistrationLocked,
            CoreError::PhoneLocked {
                retry_after_seconds: 1800,
            },
            CoreError::CompletionLinkInvalid,
            CoreError::WebhookDeliveryNotFound,
            CoreError::CompletionLinkExpired,
            CoreError::TokenExpired,
            CoreError::TokenInvalid {
                attempts_remaining: 3,
            },
            CoreError::TokenSuperseded,
            CoreError::ResendTooSoon {
                retry_after_seconds: 42,
            },
            CoreError::ResendLimitReached {
                retry_after_seconds: 300,
            },
            CoreError::SendQuotaExceeded {
                channel: Channel::Sms,
                scope: QuotaScope::Recipient,
                retry_after_seconds: 600,
            },
            CoreError::SendQuotaExceeded {
                channel: Channel::Email,
                scope: QuotaScope::HostRecipient,
                retry_after_seconds: 900,
            },
            CoreError::SendQuotaExceeded {
                channel: Channel::Sms,
                scope: QuotaScope::MonthlyBudget,
                retry_after_seconds: 86_400,
            },
            CoreError::NoEmailOnRegistration,
            CoreError::RateLimited {
                operation: LimitedOperation::Verify,
                retry_after_seconds: 30,
            },
            CoreError::RegisterTooSoon {
                retry_after_seconds: 55,
            },
            CoreError::ServerBusy {
                retry_after_seconds: 1,
            },
            CoreError::DatabaseUnavailable(anyhow::anyhow!(
                "pool timed out; this text never reaches a client"
            )),
            CoreError::Internal(anyhow::anyhow!(
                "database gone; this text never reaches a client"
            )),
        ];
        let edge = [
            ApiError::MalformedJson("expected value at line 1 column 1".into()),
            ApiError::UnsupportedMediaType {
                expected: "application/json",
            },
            ApiError::PayloadTooLarge,
            ApiError::BatchNotSupported,
            ApiError::GraphqlPolicy(
                "an operation may contain one mutation field; this one has 2".into(),
            ),
            ApiError::RouteNotFound,
            ApiError::UnknownSmsProvider,
            ApiError::ReceiptSignatureInvalid("the X-Signature header does not match the body"),
            ApiError::MethodNotAllowed,
            ApiError::UnsupportedGrantType,
            ApiError::InvalidOauthRequest("grant_type is required"),
            ApiError::InvalidClientInForm,
            ApiError::IdempotencyKeyReused,
            ApiError::IdempotencyInProgress,
        ];
        core.into_iter().map(ApiError::Core).chain(edge).collect()
    }

    /// Every REST error response: status, the headers that matter, body.
    #[tokio::test]
    async fn rest_error_contract() {
        let mut responses = Vec::new();
        for error in every_error() {
            let response = error.into_response();
            let status = response.status().as_u16();
            let header = |name: header::HeaderName| {
                response
                    .headers()
                    .get(name)
                    .map(|v| v.to_str().unwrap_or_default().to_owned())
            };
            let retry_after = header(header::RETRY_AFTER);
            let challenge = header(header::WWW_AUTHENTICATE);
            let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            responses.push(serde_json::json!({
                "status": status,
                "retryAfter": retry_after,
                "wwwAuthenticate": challenge,
                "body": body,
            }));
        }
        insta::assert_json_snapshot!(responses);
    }
}
