//! The legacy REST paths, exactly as the original API documents them. Each
//! handler only translates HTTP to a core call and back.
use axum::{Extension, Json, extract::State};

use super::{
    error::ApiResult,
    json::{ApiJson, ApiQuery},
    wire::{
        ConfirmRequest, ConfirmedBody, EmailBody, EmailQuery, RegisterRequest, ResendRequest,
        TicketBody, UsernameBody, UsernameQuery,
    },
};
use crate::{
    service::{hosts::AuthenticatedHost, registration},
    state::Core,
};

pub async fn register(
    State(core): State<Core>,
    Extension(host): Extension<AuthenticatedHost>,
    ApiJson(request): ApiJson<RegisterRequest>,
) -> ApiResult<Json<TicketBody>> {
    let ticket = registration::register(&core, &host, request.into()).await?;
    Ok(Json(ticket.into()))
}

pub async fn confirm(
    State(core): State<Core>,
    Extension(host): Extension<AuthenticatedHost>,
    ApiJson(request): ApiJson<ConfirmRequest>,
) -> ApiResult<Json<ConfirmedBody>> {
    let confirmed = registration::confirm(&core, &host, request.into()).await?;
    Ok(Json(confirmed.into()))
}

pub async fn resend_sms(
    State(core): State<Core>,
    Extension(host): Extension<AuthenticatedHost>,
    ApiJson(request): ApiJson<ResendRequest>,
) -> ApiResult<Json<TicketBody>> {
    let ticket = registration::resend_sms(&core, &host, request.into()).await?;
    Ok(Json(ticket.into()))
}

pub async fn resend_email(
    State(core): State<Core>,
    Extension(host): Extension<AuthenticatedHost>,
    ApiJson(request): ApiJson<ResendRequest>,
) -> ApiResult<Json<TicketBody>> {
    let ticket = registration::resend_email(&core, &host, request.into()).await?;
    Ok(Json(ticket.into()))
}

pub async fn verify_username(
    State(core): State<Core>,
    Extension(host): Extension<AuthenticatedHost>,
    ApiQuery(query): ApiQuery<UsernameQuery>,
) -> ApiResult<Json<UsernameBody>> {
    let availability = registration::verify_username(&core, &host, query.username.into()).await?;
    Ok(Json(availability.into()))
}

pub async fn verify_email(
    State(core): State<Core>,
    Extension(host): Extension<AuthenticatedHost>,
    ApiQuery(query): ApiQuery<EmailQuery>,
) -> ApiResult<Json<EmailBody>> {
    let availability = registration::verify_email(&core, &host, query.email.into()).await?;
    Ok(Json(availability.into()))
}
