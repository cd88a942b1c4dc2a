//! `POST /oauth/token`: the client credentials grant (RFC 6749 §4.4).
use axum::{
    Json,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde::Deserialize;

use super::{HttpState, json::read_body};
use crate::{error::AppError, service::hosts};

#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

pub async fn token(State(state): State<HttpState>, request: Request) -> Result<Response, AppError> {
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(AppError::UnsupportedMediaType {
            expected: "application/x-www-form-urlencoded",
        });
    }
    let basic = basic_credentials(request.headers())?;
    let body = read_body(request, &state).await?;
    let form: TokenForm = serde_urlencoded::from_bytes(&body)
        .map_err(|_| AppError::InvalidOauthRequest("the body is not a valid form"))?;
    if form.grant_type.as_deref() != Some("client_credentials") {
        return Err(match form.grant_type {
            None => AppError::InvalidOauthRequest("grant_type is required"),
            Some(_) => AppError::UnsupportedGrantType,
        });
    }
    let (client_id, client_secret) = match (basic, form.client_id, form.client_secret) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(AppError::InvalidOauthRequest(
                "use one client authentication method: HTTP Basic or form fields",
            ));
        }
        (Some((id, secret)), None, None) => (id, secret),
        (None, Some(id), Some(secret)) => (id, secret),
        (None, _, _) => return Err(AppError::InvalidClient),
    };
    let issued = hosts::issue_access_token(&state.core, &client_id, &client_secret).await?;
    let mut response = Json(issued).into_response();
    // RFC 6749 §5.1: token responses must not be cached.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// HTTP Basic client authentication; RFC 6749 §2.3.1 form-encodes both parts.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, AppError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = AppError::InvalidClient;
    let value = value.to_str().map_err(|_| AppError::InvalidClient)?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(malformed);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(malformed);
    }
    let decoded = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or(AppError::InvalidClient)?;
    let (id, secret) = decoded.split_once(':').ok_or(AppError::InvalidClient)?;
    let decode = |part: &str| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={part}"))
            .ok()
            .and_then(|mut pairs| pairs.pop())
            .map(|(_, v)| v)
            .ok_or(AppError::InvalidClient)
    };
    Ok(Some((decode(id)?, decode(secret)?)))
}
