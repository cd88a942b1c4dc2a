//! The legacy REST paths, exactly as the original API documents them. Each
//! handler only translates HTTP to a core call.
use axum::{Extension, Json, extract::State};
use serde::Deserialize;

use super::{
    HttpState,
    json::{ApiJson, ApiQuery},
};
use crate::{
    error::AppResult,
    service::{
        hosts::AuthenticatedHost,
        registration::{self, ConfirmRequest, RegisterRequest, ResendRequest},
        views::{
            ConfirmedRegistration, EmailAvailability, RegistrationTicket, UsernameAvailability,
        },
    },
};

pub async fn register(
    State(state): State<HttpState>,
    Extension(host): Extension<AuthenticatedHost>,
    ApiJson(request): ApiJson<RegisterRequest>,
) -> AppResult<Json<RegistrationTicket>> {
    registration::register(&state.core, &host, request)
        .await
        .map(Json)
}

pub async fn confirm(
    State(state): State<HttpState>,
    Extension(host): Extension<AuthenticatedHost>,
    ApiJson(request): ApiJson<ConfirmRequest>,
) -> AppResult<Json<ConfirmedRegistration>> {
    registration::confirm(&state.core, &host, request)
        .await
        .map(Json)
}

pub async fn resend_sms(
    State(state): State<HttpState>,
    Extension(host): Extension<AuthenticatedHost>,
    ApiJson(request): ApiJson<ResendRequest>,
) -> AppResult<Json<RegistrationTicket>> {
    registration::resend_sms(&state.core, &host, request)
        .await
        .map(Json)
}

pub async fn resend_email(
    State(state): State<HttpState>,
    Extension(host): Extension<AuthenticatedHost>,
    ApiJson(request): ApiJson<ResendRequest>,
) -> AppResult<Json<RegistrationTicket>> {
    registration::resend_email(&state.core, &host, request)
        .await
        .map(Json)
}

#[derive(Deserialize)]
pub struct UsernameQuery {
    username: Option<String>,
}

pub async fn verify_username(
    State(state): State<HttpState>,
    ApiQuery(query): ApiQuery<UsernameQuery>,
) -> AppResult<Json<UsernameAvailability>> {
    registration::verify_username(&state.core, query.username.as_deref())
        .await
        .map(Json)
}

#[derive(Deserialize)]
pub struct EmailQuery {
    email: Option<String>,
}

pub async fn verify_email(
    State(state): State<HttpState>,
    ApiQuery(query): ApiQuery<EmailQuery>,
) -> AppResult<Json<EmailAvailability>> {
    registration::verify_email(&state.core, query.email.as_deref())
        .await
        .map(Json)
}
