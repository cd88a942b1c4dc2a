//! The legacy REST paths, exactly as the original API documents them. Each
//! handler only translates HTTP to a core call and back. The `utoipa::path`
//! attributes list what each can answer (the use case's `CoreError`s
//! through `core_status`, and the HTTP layers' own refusals) for the
//! OpenAPI document in `http::openapi`.
use axum::{Extension, Json, extract::State};

use super::{
    error::{ApiResult, ErrorBody},
    idempotency::IdempotencyKey,
    json::{ApiJson, ApiQuery},
    wire::{
        ConfirmRequest, ConfirmedBody, EmailBody, EmailQuery, RegisterRequest, ResendRequest,
        TicketBody, UsernameBody, UsernameQuery,
    },
};
use crate::{
    service::{client::ClientPresence, hosts::AuthenticatedHost, registration},
    state::Core,
};

/// Start a registration
///
/// Sends the SMS code, and with an email the completion link. A pending
/// registration of the same phone by the same host is replaced.
#[utoipa::path(
    post,
    path = "/b2b/customer/register",
    operation_id = "register",
    tag = "registration",
    params(IdempotencyKey),
    request_body = RegisterRequest,
    security(("oauth2" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "Registration started; the SMS (and email) are queued.",
            body = TicketBody,
            headers(("Idempotent-Replayed" = String, description = "`true` on a replayed answer"))),
        (status = 400, description = "`VALIDATION_FAILED` (every bad field in `details`; also a \
            body that is not a JSON object or a bad `Idempotency-Key`) or `MALFORMED_JSON`.",
            body = ErrorBody<'_>),
        (status = 401, description = "`UNAUTHENTICATED`: bearer token missing, malformed, \
            unknown, revoked or expired.", body = ErrorBody<'_>,
            headers(("WWW-Authenticate" = String, description = "RFC 6750 bearer challenge"))),
        (status = 409, description = "`USERNAME_TAKEN`, `EMAIL_TAKEN`, or \
            `IDEMPOTENCY_REQUEST_IN_PROGRESS` (with `Retry-After: 1`).", body = ErrorBody<'_>,
            headers(("Retry-After" = u64, description = "Seconds; only with `IDEMPOTENCY_REQUEST_IN_PROGRESS`"))),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorBody<'_>),
        (status = 415, description = "`UNSUPPORTED_MEDIA_TYPE`: not `application/json`.", body = ErrorBody<'_>),
        (status = 422, description = "`IDEMPOTENCY_KEY_REUSED`", body = ErrorBody<'_>),
        (status = 423, description = "`PHONE_LOCKED`: refused for a while after too many wrong codes.",
            body = ErrorBody<'_>, headers(("Retry-After" = u64, description = "Seconds"))),
        (status = 429, description = "`RATE_LIMITED` (this host's register rate), \
            `REGISTER_TOO_SOON` (this host registered the phone moments ago) or \
            `SEND_QUOTA_EXCEEDED` (nothing was queued).", body = ErrorBody<'_>,
            headers(("Retry-After" = u64, description = "Seconds"))),
        (status = 500, description = "`INTERNAL`", body = ErrorBody<'_>),
        (status = 503, description = "`DATABASE_UNAVAILABLE`: the database cannot be reached; retry.",
            body = ErrorBody<'_>, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn register(
    State(core): State<Core>,
    Extension(host): Extension<AuthenticatedHost>,
    Extension(client): Extension<ClientPresence>,
    ApiJson(request): ApiJson<RegisterRequest>,
) -> ApiResult<Json<TicketBody>> {
    let ticket = registration::register(&core, &host, request.into(), &client).await?;
    Ok(Json(ticket.into()))
}

/// Complete a registration
///
/// With the SMS code and the password's MD5: creates the customer.
#[utoipa::path(
    post,
    path = "/b2b/customer/register/confirm",
    operation_id = "confirmRegistration",
    tag = "registration",
    params(IdempotencyKey),
    request_body = ConfirmRequest,
    security(("oauth2" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The customer was created.", body = ConfirmedBody,
            headers(("Idempotent-Replayed" = String, description = "`true` on a replayed answer"))),
        (status = 400, description = "`VALIDATION_FAILED` or `MALFORMED_JSON`.", body = ErrorBody<'_>),
        (status = 401, description = "`UNAUTHENTICATED`", body = ErrorBody<'_>,
            headers(("WWW-Authenticate" = String, description = "RFC 6750 bearer challenge"))),
        (status = 404, description = "`REGISTRATION_NOT_FOUND`: this host has no pending \
            registration for the username.", body = ErrorBody<'_>),
        (status = 409, description = "`REGISTRATION_COMPLETED`, `USERNAME_TAKEN`, `EMAIL_TAKEN` \
            (another registration completed first), or `IDEMPOTENCY_REQUEST_IN_PROGRESS`.",
            body = ErrorBody<'_>,
            headers(("Retry-After" = u64, description = "Seconds; only with `IDEMPOTENCY_REQUEST_IN_PROGRESS`"))),
        (status = 410, description = "`TOKEN_EXPIRED`: ask for a new SMS.", body = ErrorBody<'_>),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorBody<'_>),
        (status = 415, description = "`UNSUPPORTED_MEDIA_TYPE`: not `application/json`.", body = ErrorBody<'_>),
        (status = 422, description = "`TOKEN_INVALID` (with `attemptsRemaining`), \
            `TOKEN_SUPERSEDED` (a code from an older SMS; no attempt spent) or \
            `IDEMPOTENCY_KEY_REUSED`.", body = ErrorBody<'_>),
        (status = 423, description = "`REGISTRATION_LOCKED` (too many wrong codes; register \
            again) or `PHONE_LOCKED` (with `Retry-After`).", body = ErrorBody<'_>,
            headers(("Retry-After" = u64, description = "Seconds; only with `PHONE_LOCKED`"))),
        (status = 500, description = "`INTERNAL`", body = ErrorBody<'_>),
        (status = 503, description = "`SERVER_BUSY`: password hashing is at capacity; or \
            `DATABASE_UNAVAILABLE`: the database cannot be reached.",
            body = ErrorBody<'_>, headers(("Retry-After" = u64, description = "Seconds"))),
    )
)]
pub async fn confirm(
    State(core): State<Core>,
    Extension(host): Extension<AuthenticatedHost>,
    Extension(client): Extension<ClientPresence>,
    ApiJson(request): ApiJson<ConfirmRequest>,
) -> ApiResult<Json<ConfirmedBody>> {
    let confirmed = registration::confirm(&core, &host, request.into(), &client).await?;
    Ok(Json(confirmed.into()))
}

/// Resend the registration SMS
///
/// A new code is issued; the previous one stops working.
#[utoipa::path(
    post,
    path = "/b2b/customer/resend/registration/sms",
    operation_id = "resendRegistrationSms",
    tag = "registration",
    params(IdempotencyKey),
    request_body = ResendRequest,
    security(("oauth2" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "A new code was issued and its SMS queued.", body = TicketBody,
            headers(("Idempotent-Replayed" = String, description = "`true` on a replayed answer"))),
        (status = 400, description = "`VALIDATION_FAILED` or `MALFORMED_JSON`.", body = ErrorBody<'_>),
        (status = 401, description = "`UNAUTHENTICATED`", body = ErrorBody<'_>,
            headers(("WWW-Authenticate" = String, description = "RFC 6750 bearer challenge"))),
        (status = 404, description = "`REGISTRATION_NOT_FOUND`", body = ErrorBody<'_>),
        (status = 409, description = "`REGISTRATION_COMPLETED` or `IDEMPOTENCY_REQUEST_IN_PROGRESS`.",
            body = ErrorBody<'_>,
            headers(("Retry-After" = u64, description = "Seconds; only with `IDEMPOTENCY_REQUEST_IN_PROGRESS`"))),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorBody<'_>),
        (status = 415, description = "`UNSUPPORTED_MEDIA_TYPE`: not `application/json`.", body = ErrorBody<'_>),
        (status = 422, description = "`TOKEN_SUPERSEDED` (a concurrent request replaced the \
            registration) or `IDEMPOTENCY_KEY_REUSED`.", body = ErrorBody<'_>),
        (status = 423, description = "`REGISTRATION_LOCKED` or `PHONE_LOCKED` (with `Retry-After`).",
            body = ErrorBody<'_>,
            headers(("Retry-After" = u64, description = "Seconds; only with `PHONE_LOCKED`"))),
        (status = 429, description = "`RESEND_TOO_SOON`, `RESEND_LIMIT_REACHED` or \
            `SEND_QUOTA_EXCEEDED`.", body = ErrorBody<'_>,
            headers(("Retry-After" = u64, description = "Seconds"))),
        (status = 500, description = "`INTERNAL`", body = ErrorBody<'_>),
        (status = 503, description = "`DATABASE_UNAVAILABLE`: the database cannot be reached; retry.",
            body = ErrorBody<'_>, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn resend_sms(
    State(core): State<Core>,
    Extension(host): Extension<AuthenticatedHost>,
    ApiJson(request): ApiJson<ResendRequest>,
) -> ApiResult<Json<TicketBody>> {
    let ticket = registration::resend_sms(&core, &host, request.into()).await?;
    Ok(Json(ticket.into()))
}

/// Resend the registration email
///
/// A new completion link is issued; the previous one stops working. The
/// SMS code is unchanged.
#[utoipa::path(
    post,
    path = "/b2b/customer/resend/registration/email",
    operation_id = "resendRegistrationEmail",
    tag = "registration",
    params(IdempotencyKey),
    request_body = ResendRequest,
    security(("oauth2" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "A new link was issued and its email queued; the ticket \
            shows the current SMS code.", body = TicketBody,
            headers(("Idempotent-Replayed" = String, description = "`true` on a replayed answer"))),
        (status = 400, description = "`VALIDATION_FAILED` or `MALFORMED_JSON`.", body = ErrorBody<'_>),
        (status = 401, description = "`UNAUTHENTICATED`", body = ErrorBody<'_>,
            headers(("WWW-Authenticate" = String, description = "RFC 6750 bearer challenge"))),
        (status = 404, description = "`REGISTRATION_NOT_FOUND`", body = ErrorBody<'_>),
        (status = 409, description = "`REGISTRATION_COMPLETED` or `IDEMPOTENCY_REQUEST_IN_PROGRESS`.",
            body = ErrorBody<'_>,
            headers(("Retry-After" = u64, description = "Seconds; only with `IDEMPOTENCY_REQUEST_IN_PROGRESS`"))),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorBody<'_>),
        (status = 415, description = "`UNSUPPORTED_MEDIA_TYPE`: not `application/json`.", body = ErrorBody<'_>),
        (status = 422, description = "`NO_EMAIL_ON_REGISTRATION`, `TOKEN_SUPERSEDED` (a \
            concurrent request replaced the registration) or `IDEMPOTENCY_KEY_REUSED`.",
            body = ErrorBody<'_>),
        (status = 423, description = "`REGISTRATION_LOCKED` or `PHONE_LOCKED` (with `Retry-After`).",
            body = ErrorBody<'_>,
            headers(("Retry-After" = u64, description = "Seconds; only with `PHONE_LOCKED`"))),
        (status = 429, description = "`RESEND_TOO_SOON`, `RESEND_LIMIT_REACHED` or \
            `SEND_QUOTA_EXCEEDED`.", body = ErrorBody<'_>,
            headers(("Retry-After" = u64, description = "Seconds"))),
        (status = 500, description = "`INTERNAL`", body = ErrorBody<'_>),
        (status = 503, description = "`DATABASE_UNAVAILABLE`: the database cannot be reached; retry.",
            body = ErrorBody<'_>, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn resend_email(
    State(core): State<Core>,
    Extension(host): Extension<AuthenticatedHost>,
    ApiJson(request): ApiJson<ResendRequest>,
) -> ApiResult<Json<TicketBody>> {
    let ticket = registration::resend_email(&core, &host, request.into()).await?;
    Ok(Json(ticket.into()))
}

/// Verify a username
///
/// Whether a customer already has this phone number as username.
#[utoipa::path(
    get,
    path = "/b2b/customer/auth/verifyUsername",
    operation_id = "verifyUsername",
    tag = "registration",
    params(UsernameQuery),
    security(("oauth2" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The answer.", body = UsernameBody),
        (status = 400, description = "`VALIDATION_FAILED`: `username` missing or not a phone \
            number, or a malformed query string (`query`).", body = ErrorBody<'_>),
        (status = 401, description = "`UNAUTHENTICATED`", body = ErrorBody<'_>,
            headers(("WWW-Authenticate" = String, description = "RFC 6750 bearer challenge"))),
        (status = 429, description = "`RATE_LIMITED`: this host's verify rate.", body = ErrorBody<'_>,
            headers(("Retry-After" = u64, description = "Seconds"))),
        (status = 500, description = "`INTERNAL`", body = ErrorBody<'_>),
        (status = 503, description = "`DATABASE_UNAVAILABLE`: the database cannot be reached; retry.",
            body = ErrorBody<'_>, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn verify_username(
    State(core): State<Core>,
    Extension(host): Extension<AuthenticatedHost>,
    ApiQuery(query): ApiQuery<UsernameQuery>,
) -> ApiResult<Json<UsernameBody>> {
    let availability = registration::verify_username(&core, &host, query.username.into()).await?;
    Ok(Json(availability.into()))
}

/// Verify an email
///
/// Whether a customer already has this email.
#[utoipa::path(
    get,
    path = "/b2b/customer/auth/verifyEmail",
    operation_id = "verifyEmail",
    tag = "registration",
    params(EmailQuery),
    security(("oauth2" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The answer.", body = EmailBody),
        (status = 400, description = "`VALIDATION_FAILED`: `email` missing or not an address, \
            or a malformed query string (`query`).", body = ErrorBody<'_>),
        (status = 401, description = "`UNAUTHENTICATED`", body = ErrorBody<'_>,
            headers(("WWW-Authenticate" = String, description = "RFC 6750 bearer challenge"))),
        (status = 429, description = "`RATE_LIMITED`: this host's verify rate.", body = ErrorBody<'_>,
            headers(("Retry-After" = u64, description = "Seconds"))),
        (status = 500, description = "`INTERNAL`", body = ErrorBody<'_>),
        (status = 503, description = "`DATABASE_UNAVAILABLE`: the database cannot be reached; retry.",
            body = ErrorBody<'_>, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn verify_email(
    State(core): State<Core>,
    Extension(host): Extension<AuthenticatedHost>,
    ApiQuery(query): ApiQuery<EmailQuery>,
) -> ApiResult<Json<EmailBody>> {
    let availability = registration::verify_email(&core, &host, query.email.into()).await?;
    Ok(Json(availability.into()))
}
