//! `POST /oauth/token`: the client credentials grant (RFC 6749 §4.4).
use axum::{
    Json,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde::{Deserialize, Serialize};

use super::{error::ApiError, json::read_body};
use crate::{error::CoreError, service::hosts, state::Core};

/// RFC 6749 §5.1 successful response.
#[derive(Serialize)]
struct TokenBody {
    access_token: String,
    token_type: &'static str,
    expires_in: u32,
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

pub async fn token(State(core): State<Core>, request: Request) -> Result<Response, ApiError> {
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(ApiError::UnsupportedMediaType {
            expected: "application/x-www-form-urlencoded",
        });
    }
    let basic = basic_credentials(request.headers())?;
    let body = read_body(request, &core).await?;
    let form: TokenForm = serde_urlencoded::from_bytes(&body)
        .map_err(|_| ApiError::InvalidOauthRequest("the body is not a valid form"))?;
    if form.grant_type.as_deref() != Some("client_credentials") {
        return Err(match form.grant_type {
            None => ApiError::InvalidOauthRequest("grant_type is required"),
            Some(_) => ApiError::UnsupportedGrantType,
        });
    }
    let (client_id, client_secret) = match (basic, form.client_id, form.client_secret) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(ApiError::InvalidOauthRequest(
                "use one client authentication method: HTTP Basic or form fields",
            ));
        }
        (Some((id, secret)), None, None) => (id, secret),
        (None, Some(id), Some(secret)) => (id, secret),
        (None, _, _) => return Err(CoreError::InvalidClient.into()),
    };
    let issued = hosts::issue_access_token(&core, &client_id, &client_secret).await?;
    let mut response = Json(TokenBody {
        access_token: issued.access_token,
        token_type: issued.token_type,
        expires_in: issued.expires_in,
    })
    .into_response();
    // RFC 6749 §5.1: token responses must not be cached.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// HTTP Basic client authentication; RFC 6749 §2.3.1 form-encodes both parts.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = invalid_client();
    let value = value.to_str().map_err(|_| invalid_client())?;
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
        .ok_or_else(invalid_client)?;
    let (id, secret) = decoded.split_once(':').ok_or_else(invalid_client)?;
    let decode = |part: &str| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={part}"))
            .ok()
            .and_then(|mut pairs| pairs.pop())
            .map(|(_, v)| v)
            .ok_or_else(invalid_client)
    };
    Ok(Some((decode(id)?, decode(secret)?)))
}

fn invalid_client() -> ApiError {
    CoreError::InvalidClient.into()
}
