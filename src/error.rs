//! The core's one error type: every outcome of a use case that is not
//! success. It knows nothing of HTTP or GraphQL; `http::error` maps it to a
//! status, JSON body and headers, `graphql::error` to error extensions.
//! Codes are listed in `docs/ERRORS.md`; never rename one, clients match on them.
use entity::states::Channel;
use sea_orm::{DbErr, RuntimeErr};

/// A value broke a rule: a stable `code` and the rule in words, written to
/// follow the field's name (`"must be in the past"`). Domain `parse`
/// functions return it; whoever read the field names it ([`FieldError::on`]).
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

/// One problem with one input field. `field` uses the API's own name
/// (`birthDate`, `countryId`, ...), the same in REST and GraphQL.
#[derive(Debug, Clone, PartialEq, Eq)]
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

    /// Names the field a domain rule was checked on.
    pub fn on(field: &str, invalid: Invalid) -> Self {
        Self::new(field, invalid.code, format!("{field} {}", invalid.rule))
    }
}

/// Why a request carries no usable access token (RFC 6750 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No credentials at all: the challenge carries no error code.
    MissingToken,
    MalformedHeader,
    UnknownToken,
    Revoked,
    Expired,
}

impl AuthFailure {
    pub fn description(self) -> &'static str {
        match self {
            AuthFailure::MissingToken => "an Authorization: Bearer <token> header is required",
            AuthFailure::MalformedHeader => {
                "the Authorization header must be: Bearer <access token>"
            }
            AuthFailure::UnknownToken => "the access token is not recognised",
            AuthFailure::Revoked => "the access token was revoked",
            AuthFailure::Expired => "the access token has expired",
        }
    }
}

/// Which send quota refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaScope {
    /// The one phone number or email address.
    Recipient,
    /// The one phone number or email address, from the one host.
    HostRecipient,
    Host,
    Global,
    /// The host's monthly SMS budget (`host budget`).
    MonthlyBudget,
}

/// Requests a host may make only so often (`[quotas]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitedOperation {
    Register,
    /// `verifyUsername` and `verifyEmail`.
    Verify,
}

impl LimitedOperation {
    pub fn name(self) -> &'static str {
        match self {
            LimitedOperation::Register => "register",
            LimitedOperation::Verify => "verify",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),

    #[error("{}", .0.description())]
    Unauthenticated(AuthFailure),
    #[error("client authentication failed")]
    InvalidClient,

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
    /// Also for another host's delivery: whether it exists is not told.
    #[error("no webhook delivery with this id")]
    WebhookDeliveryNotFound,
    #[error("this completion link has expired")]
    CompletionLinkExpired,
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
    #[error("{}", quota_refusal(*.channel, *.scope))]
    SendQuotaExceeded {
        channel: Channel,
        scope: QuotaScope,
        retry_after_seconds: u64,
    },
    #[error("this registration has no email address")]
    NoEmailOnRegistration,
    #[error("no message sent through this SMS provider has this message id")]
    MessageNotFound,
    #[error("too many {} requests from this host; retry later", .operation.name())]
    RateLimited {
        operation: LimitedOperation,
        retry_after_seconds: u64,
    },
    #[error("this host registered the phone moments ago; wait before registering it again")]
    RegisterTooSoon { retry_after_seconds: u64 },

    #[error("the server is busy; retry shortly")]
    ServerBusy { retry_after_seconds: u64 },

    /// The database cannot be reached (a node down, the pool exhausted):
    /// another instance, or this one a moment later, can serve the request.
    #[error("the database is unavailable; retry shortly")]
    DatabaseUnavailable(anyhow::Error),

    #[error("internal error")]
    Internal(anyhow::Error),
}

/// Infrastructure failures become `Internal`, except a database that cannot
/// be reached or cannot serve for now (`database_unavailable`), which is
/// `DatabaseUnavailable`: the request may be retried.
impl From<anyhow::Error> for CoreError {
    fn from(error: anyhow::Error) -> Self {
        let unreachable = error.chain().any(|cause| {
            cause
                .downcast_ref::<DbErr>()
                .is_some_and(database_unavailable)
        });
        if unreachable {
            CoreError::DatabaseUnavailable(error)
        } else {
            CoreError::Internal(error)
        }
    }
}

/// Whether the database could not serve the statement for now, so that
/// another instance, or this one a moment later, may: no connection, or
/// one that broke under the statement (pooled connections are pinged only
/// after a second idle, `db::connect_and_migrate`, so a server that went
/// away is often first met this way); a server refusing every statement (SQLSTATE class 08: a Galera node cut
/// off from its cluster's primary component answers 1047, 08S01); or a wait
/// that ran out (MySQL 1205, lock wait timeout, which is also how a read on
/// a Galera node fails when it cannot catch up with the cluster under
/// `wsrep_sync_wait`).
fn database_unavailable(error: &DbErr) -> bool {
    use sea_orm::sqlx::mysql::MySqlDatabaseError;
    const LOCK_WAIT_TIMEOUT: u16 = 1205;
    if matches!(error, DbErr::ConnectionAcquire(_) | DbErr::Conn(_)) {
        return true;
    }
    let (DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))) = error
    else {
        return false;
    };
    if matches!(
        &**e,
        sea_orm::sqlx::Error::Io(_)
            | sea_orm::sqlx::Error::PoolTimedOut
            | sea_orm::sqlx::Error::PoolClosed
    ) {
        return true;
    }
    e.as_database_error().is_some_and(|database| {
        database.code().is_some_and(|code| code.starts_with("08"))
            || database
                .try_downcast_ref::<MySqlDatabaseError>()
                .is_some_and(|mysql| mysql.number() == LOCK_WAIT_TIMEOUT)
    })
}

/// How a quota scope is named in messages and logs.
pub fn quota_scope_name(channel: Channel, scope: QuotaScope) -> &'static str {
    match (scope, channel) {
        (QuotaScope::Recipient, Channel::Sms) => "phone",
        (QuotaScope::Recipient, Channel::Email) => "email",
        (QuotaScope::HostRecipient, Channel::Sms) => "host-phone",
        (QuotaScope::HostRecipient, Channel::Email) => "host-email",
        (QuotaScope::Recipient | QuotaScope::HostRecipient, Channel::Webhook) => "webhook",
        (QuotaScope::Host, _) => "host",
        (QuotaScope::Global, _) => "global",
        (QuotaScope::MonthlyBudget, _) => "host-monthly-budget",
    }
}

/// What a refused send says: which quota, and when it renews.
fn quota_refusal(channel: Channel, scope: QuotaScope) -> String {
    match scope {
        QuotaScope::MonthlyBudget => {
            "this host's monthly SMS budget is used up; it renews on the 1st of next month (UTC)"
                .to_owned()
        }
        _ => format!(
            "the {} {} quota is used up; retry later",
            quota_scope_name(channel, scope),
            channel.name()
        ),
    }
}

impl CoreError {
    pub fn field(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, code, message)])
    }

    /// Stable, machine-readable code shared by REST and GraphQL.
    pub fn code(&self) -> &'static str {
        use CoreError::*;
        match self {
            Validation(_) => "VALIDATION_FAILED",
            Unauthenticated(_) => "UNAUTHENTICATED",
            InvalidClient => "INVALID_CLIENT",
            UsernameTaken => "USERNAME_TAKEN",
            EmailTaken => "EMAIL_TAKEN",
            RegistrationNotFound => "REGISTRATION_NOT_FOUND",
            WebhookDeliveryNotFound => "WEBHOOK_DELIVERY_NOT_FOUND",
            RegistrationCompleted => "REGISTRATION_COMPLETED",
            RegistrationLocked => "REGISTRATION_LOCKED",
            PhoneLocked { .. } => "PHONE_LOCKED",
            TokenExpired => "TOKEN_EXPIRED",
            CompletionLinkInvalid => "LINK_INVALID",
            CompletionLinkExpired => "LINK_EXPIRED",
            TokenInvalid { .. } => "TOKEN_INVALID",
            TokenSuperseded => "TOKEN_SUPERSEDED",
            ResendTooSoon { .. } => "RESEND_TOO_SOON",
            ResendLimitReached { .. } => "RESEND_LIMIT_REACHED",
            SendQuotaExceeded { .. } => "SEND_QUOTA_EXCEEDED",
            NoEmailOnRegistration => "NO_EMAIL_ON_REGISTRATION",
            MessageNotFound => "MESSAGE_NOT_FOUND",
            RateLimited { .. } => "RATE_LIMITED",
            RegisterTooSoon { .. } => "REGISTER_TOO_SOON",
            ServerBusy { .. } => "SERVER_BUSY",
            DatabaseUnavailable(_) => "DATABASE_UNAVAILABLE",
            Internal(_) => "INTERNAL",
        }
    }

    /// When the same request may succeed if sent again.
    pub fn retry_after_seconds(&self) -> Option<u64> {
        use CoreError::*;
        match self {
            PhoneLocked {
                retry_after_seconds,
            }
            | ResendTooSoon {
                retry_after_seconds,
            }
            | ResendLimitReached {
                retry_after_seconds,
            }
            | ServerBusy {
                retry_after_seconds,
            }
            | RegisterTooSoon {
                retry_after_seconds,
            }
            | RateLimited {
                retry_after_seconds,
                ..
            }
            | SendQuotaExceeded {
                retry_after_seconds,
                ..
            } => Some(*retry_after_seconds),
            DatabaseUnavailable(_) => Some(1),
            _ => None,
        }
    }

    pub fn attempts_remaining(&self) -> Option<u32> {
        match self {
            CoreError::TokenInvalid { attempts_remaining } => Some(*attempts_remaining),
            _ => None,
        }
    }

    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            CoreError::Validation(fields) => fields,
            _ => &[],
        }
    }

    /// Internal errors are logged in full where they reach a transport;
    /// refusals are expected and logged at debug.
    pub fn log(&self) {
        match self {
            CoreError::Internal(error) => tracing::error!(error = ?error, "request failed"),
            CoreError::DatabaseUnavailable(error) => {
                tracing::warn!(error = %error, "database unavailable")
            }
            other => tracing::debug!(code = other.code(), "request refused"),
        }
    }
}

pub type CoreResult<T> = Result<T, CoreError>;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use anyhow::Context;
    use sea_orm::{DbErr, RuntimeErr, sqlx};

    use super::CoreError;

    fn failed(error: sqlx::Error) -> CoreError {
        let failure: Result<(), DbErr> = Err(DbErr::Query(RuntimeErr::SqlxError(Arc::new(error))));
        failure
            .context("Failed to run a statement")
            .unwrap_err()
            .into()
    }

    #[test]
    fn a_connection_that_broke_or_could_not_be_had_is_unavailable_not_internal() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(matches!(
            failed(sqlx::Error::Io(reset)),
            CoreError::DatabaseUnavailable(_)
        ));
        assert!(matches!(
            failed(sqlx::Error::PoolTimedOut),
            CoreError::DatabaseUnavailable(_)
        ));
        assert!(matches!(
            failed(sqlx::Error::RowNotFound),
            CoreError::Internal(_)
        ));
    }
}
