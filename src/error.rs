//! The one error type of the service, and the one place that turns it into
//! an HTTP response or a GraphQL error. Codes are documented in
//! `docs/ERRORS.md`; never rename one, clients match on them.
use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

/// One problem with one input field. `field` uses the API's own name
/// (`birthDate`, `countryId`, ...), the same in REST and GraphQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            code,
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
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

    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("client authentication failed")]
    InvalidClient,
    #[error("grant_type must be client_credentials")]
    UnsupportedGrantType,
    #[error("{0}")]
    InvalidOauthRequest(&'static str),

    #[error("a customer with this username (phone) is already registered")]
    UsernameTaken,
    #[error("a customer with this email is already registered")]
    EmailTaken,
    #[error("no pending registration for this username")]
    RegistrationNotFound,
    #[error("this registration is already complete")]
    RegistrationCompleted,
    #[error("too many wrong codes: this registration is locked; register again to get a new code")]
    RegistrationLocked,
    #[error("this phone number is temporarily refused after too many wrong codes")]
    PhoneLocked { retry_after_seconds: u64 },
    #[error("this completion link is not valid")]
    CompletionLinkInvalid,
    #[error("this completion link has expired")]
    CompletionLinkExpired,
    #[error("the form expired; reload the page and try again")]
    CsrfRejected,
    #[error("the code has expired; ask for a new SMS")]
    TokenExpired,
    #[error("the code is wrong")]
    TokenInvalid { attempts_remaining: u32 },
    #[error("this code was replaced by a newer SMS; use the code from the latest SMS")]
    TokenSuperseded,
    #[error("wait before sending again")]
    ResendTooSoon { retry_after_seconds: u64 },
    #[error("the maximum number of sends for this registration is reached; register again")]
    ResendLimitReached { retry_after_seconds: u64 },
    #[error("the {scope} {channel} quota is used up; retry later")]
    SendQuotaExceeded {
        channel: &'static str,
        scope: &'static str,
        retry_after_seconds: u64,
    },
    #[error("this registration has no email address")]
    NoEmailOnRegistration,

    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still being processed")]
    IdempotencyInProgress,
    #[error("the server is busy; retry shortly")]
    ServerBusy { retry_after_seconds: u64 },

    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    pub fn field(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, code, message)])
    }

    /// Stable, machine-readable code shared by REST and GraphQL.
    pub fn code(&self) -> &'static str {
        use AppError::*;
        match self {
            Validation(_) => "VALIDATION_FAILED",
            MalformedJson(_) => "MALFORMED_JSON",
            UnsupportedMediaType { .. } => "UNSUPPORTED_MEDIA_TYPE",
            PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            BatchNotSupported => "BATCH_NOT_SUPPORTED",
            GraphqlPolicy(_) => "GRAPHQL_POLICY_VIOLATION",
            RouteNotFound => "ROUTE_NOT_FOUND",
            MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Unauthenticated(_) => "UNAUTHENTICATED",
            InvalidClient => "INVALID_CLIENT",
            UnsupportedGrantType => "UNSUPPORTED_GRANT_TYPE",
            InvalidOauthRequest(_) => "INVALID_REQUEST",
            UsernameTaken => "USERNAME_TAKEN",
            EmailTaken => "EMAIL_TAKEN",
            RegistrationNotFound => "REGISTRATION_NOT_FOUND",
            RegistrationCompleted => "REGISTRATION_COMPLETED",
            RegistrationLocked => "REGISTRATION_LOCKED",
            PhoneLocked { .. } => "PHONE_LOCKED",
            TokenExpired => "TOKEN_EXPIRED",
            CompletionLinkInvalid => "LINK_INVALID",
            CompletionLinkExpired => "LINK_EXPIRED",
            CsrfRejected => "CSRF_REJECTED",
            TokenInvalid { .. } => "TOKEN_INVALID",
            TokenSuperseded => "TOKEN_SUPERSEDED",
            ResendTooSoon { .. } => "RESEND_TOO_SOON",
            ResendLimitReached { .. } => "RESEND_LIMIT_REACHED",
            SendQuotaExceeded { .. } => "SEND_QUOTA_EXCEEDED",
            NoEmailOnRegistration => "NO_EMAIL_ON_REGISTRATION",
            IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            IdempotencyInProgress => "IDEMPOTENCY_REQUEST_IN_PROGRESS",
            ServerBusy { .. } => "SERVER_BUSY",
            Internal(_) => "INTERNAL",
        }
    }

    pub fn status(&self) -> StatusCode {
        use AppError::*;
        match self {
            Validation(_) | MalformedJson(_) | BatchNotSupported | GraphqlPolicy(_) => {
                StatusCode::BAD_REQUEST
            }
            UnsupportedGrantType | InvalidOauthRequest(_) => StatusCode::BAD_REQUEST,
            UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RouteNotFound | RegistrationNotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Unauthenticated(_) | InvalidClient => StatusCode::UNAUTHORIZED,
            UsernameTaken | EmailTaken | RegistrationCompleted | IdempotencyInProgress => {
                StatusCode::CONFLICT
            }
            RegistrationLocked | PhoneLocked { .. } => StatusCode::LOCKED,
            TokenExpired | CompletionLinkExpired => StatusCode::GONE,
            CompletionLinkInvalid => StatusCode::NOT_FOUND,
            CsrfRejected => StatusCode::FORBIDDEN,
            TokenInvalid { .. } | TokenSuperseded | NoEmailOnRegistration => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ResendTooSoon { .. } | ResendLimitReached { .. } | SendQuotaExceeded { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ServerBusy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn retry_after_seconds(&self) -> Option<u64> {
        match self {
            AppError::PhoneLocked {
                retry_after_seconds,
            }
            | AppError::ResendTooSoon {
                retry_after_seconds,
            }
            | AppError::ResendLimitReached {
                retry_after_seconds,
            }
            | AppError::ServerBusy {
                retry_after_seconds,
            }
            | AppError::SendQuotaExceeded {
                retry_after_seconds,
                ..
            } => Some(*retry_after_seconds),
            AppError::IdempotencyInProgress => Some(1),
            _ => None,
        }
    }

    fn body(&self) -> ErrorBody<'_> {
        let (oauth_error, oauth_description) = match self {
            AppError::InvalidClient => (Some("invalid_client"), Some(self.to_string())),
            AppError::UnsupportedGrantType => {
                (Some("unsupported_grant_type"), Some(self.to_string()))
            }
            AppError::InvalidOauthRequest(_) => (Some("invalid_request"), Some(self.to_string())),
            _ => (None, None),
        };
        ErrorBody {
            code: self.code(),
            message: self.to_string(),
            details: match self {
                AppError::Validation(fields) => fields,
                _ => &[],
            },
            attempts_remaining: match self {
                AppError::TokenInvalid { attempts_remaining } => Some(*attempts_remaining),
                _ => None,
            },
            retry_after_seconds: self.retry_after_seconds(),
            error: oauth_error,
            error_description: oauth_description,
        }
    }

    fn log(&self) {
        match self {
            AppError::Internal(error) => tracing::error!(error = ?error, "request failed"),
            other => tracing::debug!(code = other.code(), "request refused"),
        }
    }
}

/// The JSON error shape of every REST response (and of `/oauth/token`,
/// which adds the RFC 6749 `error` and `error_description` members).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody<'a> {
    code: &'static str,
    message: String,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    details: &'a [FieldError],
    #[serde(skip_serializing_if = "Option::is_none")]
    attempts_remaining: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_description: Option<String>,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        self.log();
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after_seconds() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        match &self {
            AppError::Unauthenticated(reason) => {
                let value = if *reason == MISSING_TOKEN {
                    r#"Bearer realm="customer-registration""#.to_owned()
                } else {
                    format!(
                        r#"Bearer realm="customer-registration", error="invalid_token", error_description="{reason}""#
                    )
                };
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(header::WWW_AUTHENTICATE, value);
                }
            }
            AppError::InvalidClient => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Basic realm="customer-registration""#),
                );
            }
            _ => {}
        }
        response
    }
}

/// The reason given when no credentials were sent at all: RFC 6750 §3.1
/// says such a challenge carries no error code.
pub const MISSING_TOKEN: &str = "an Authorization: Bearer <token> header is required";

impl From<AppError> for async_graphql::Error {
    fn from(error: AppError) -> Self {
        error.log();
        let body = error.body();
        let mut gql = async_graphql::Error::new(body.message.clone());
        let mut extensions = async_graphql::ErrorExtensionValues::default();
        extensions.set("code", body.code);
        extensions.set("status", error.status().as_u16());
        if !body.details.is_empty() {
            let details = async_graphql::to_value(body.details).unwrap_or_default();
            extensions.set("details", details);
        }
        if let Some(remaining) = body.attempts_remaining {
            extensions.set("attemptsRemaining", remaining);
        }
        if let Some(seconds) = body.retry_after_seconds {
            extensions.set("retryAfterSeconds", seconds);
        }
        gql.extensions = Some(extensions);
        gql
    }
}

pub type AppResult<T> = Result<T, AppError>;
