//! `POST /oauth/token`: the client credentials grant (RFC 6749 §4.4).
use axum::{
    Json,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    error::{ApiError, ErrorBody},
    json::read_body,
};
use crate::{error::CoreError, service::hosts, state::Core};

/// RFC 6749 §5.1 successful response.
#[derive(Serialize, ToSchema)]
pub(super) struct TokenBody {
    /// Send it as `Authorization: Bearer <access_token>`.
    access_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    token_type: &'static str,
    /// Seconds the token stays valid.
    #[schema(example = 3600)]
    expires_in: u32,
}

/// RFC 6749 §4.4.2. The client authenticates with `client_id` and
/// `client_secret` here or with HTTP Basic, never both.
#[derive(Deserialize, ToSchema)]
pub(super) struct TokenForm {
    /// Only `client_credentials` is supported.
    #[schema(value_type = String, required = true, example = "client_credentials")]
    grant_type: Option<String>,
    // `String`, not `Option`: a form has no null.
    /// With `client_secret`, unless HTTP Basic carries both.
    #[schema(value_type = String, required = false)]
    client_id: Option<String>,
    /// With `client_id`, unless HTTP Basic carries both.
    #[schema(value_type = String, required = false)]
    client_secret: Option<String>,
}

/// Get an access token
///
/// For a host, by the client credentials grant.
#[utoipa::path(
    post,
    path = "/oauth/token",
    operation_id = "issueAccessToken",
    tag = "oauth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    security((), ("clientBasic" = [])),
    responses(
        (status = 200, description = "The access token (RFC 6749 §5.1).", body = TokenBody,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, description = "`INVALID_REQUEST` (`error`: `invalid_request`: no \
            `grant_type`, not a form, or credentials both in the form and in HTTP Basic) or \
            `UNSUPPORTED_GRANT_TYPE` (`unsupported_grant_type`).", body = ErrorBody<'_>),
        (status = 401, description = "`INVALID_CLIENT` (`error`: `invalid_client`): unknown or \
            disabled client, wrong secret, no credentials, or an `Authorization` header that is \
            not valid HTTP Basic.", body = ErrorBody<'_>,
            headers(("WWW-Authenticate" = String, description = "`Basic realm=\"customer-registration\"`"))),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorBody<'_>),
        (status = 415, description = "`UNSUPPORTED_MEDIA_TYPE`: not `application/x-www-form-urlencoded`.", body = ErrorBody<'_>),
        (status = 500, description = "`INTERNAL`", body = ErrorBody<'_>),
    )
)]
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
