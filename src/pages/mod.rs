//! Pages people see in a browser: the completion page behind the email link.
use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};

use crate::{
    domain::Language,
    error::AppError,
    http::HttpState,
    service::completion::{self, LinkState},
};

pub async fn completion_page(
    State(state): State<HttpState>,
    Path(token): Path<String>,
) -> Result<Response, AppError> {
    let status = completion::inspect_link(&state.core, &token).await?;
    let (code, body) = match status.state {
        LinkState::Open => (
            StatusCode::OK,
            match status.language {
                Language::Id => format!(
                    "Pendaftaran untuk {}. Masukkan kode SMS yang diawali {}.",
                    status.masked_phone.unwrap_or_default(),
                    status.token_prefix.unwrap_or_default()
                ),
                Language::En => format!(
                    "Registration for {}. Enter the SMS code that starts with {}.",
                    status.masked_phone.unwrap_or_default(),
                    status.token_prefix.unwrap_or_default()
                ),
            },
        ),
        LinkState::Completed => (StatusCode::OK, "Registration complete.".to_owned()),
        LinkState::Expired => (StatusCode::GONE, "This link has expired.".to_owned()),
        LinkState::Invalid => (StatusCode::NOT_FOUND, "This link is not valid.".to_owned()),
    };
    let html = format!(
        "<!DOCTYPE html><html lang=\"{}\"><head><meta charset=\"utf-8\"><title>Registration</title></head><body><p>{}</p></body></html>",
        status.language.code(),
        escape(&body)
    );
    Ok((code, Html(html)).into_response())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
