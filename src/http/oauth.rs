//! The OAuth 2.0 endpoints: `POST /oauth/token`, the client credentials
//! grant (RFC 6749 §4.4), and `POST /oauth/revoke` (RFC 7009). Every
//! malformed request gets an RFC 6749 §5.2 error (400 `invalid_request`,
//! `unsupported_grant_type`, 401 `invalid_client`), and no response of
//! either endpoint may be cached.
use axum::{
    Json,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
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

/// The form members of both endpoints; each reads its own.
#[derive(Deserialize)]
struct OauthForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    token: Option<String>,
    /// RFC 7009 §2.1: a hint the server may ignore; only access tokens exist here.
    #[serde(rename = "token_type_hint")]
    _token_type_hint: Option<String>,
}

/// RFC 6749 §4.4.2, as documented. The client authenticates with
/// `client_id` and `client_secret` here or with HTTP Basic, never both.
#[derive(ToSchema)]
#[allow(dead_code, reason = "describes the form for the OpenAPI document")]
pub(super) struct TokenForm {
    /// Only `client_credentials` is supported.
    #[schema(example = "client_credentials")]
    grant_type: String,
    /// With `client_secret`, unless HTTP Basic carries both.
    client_id: Option<String>,
    /// With `client_id`, unless HTTP Basic carries both.
    client_secret: Option<String>,
}

/// RFC 7009 §2.1, as documented.
#[derive(ToSchema)]
#[allow(dead_code, reason = "describes the form for the OpenAPI document")]
pub(super) struct RevokeForm {
    /// The access token to revoke.
    token: String,
    /// Ignored: only access tokens exist here.
    #[schema(example = "access_token")]
    token_type_hint: Option<String>,
    /// With `client_secret`, unless HTTP Basic carries both.
    client_id: Option<String>,
    /// With `client_id`, unless HTTP Basic carries both.
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
            headers(("Cache-Control" = String, description = "`no-store`"),
                    ("Pragma" = String, description = "`no-cache`"))),
        (status = 400, description = "`INVALID_REQUEST` (`error`: `invalid_request`: not a \
            form, no `grant_type`, a repeated parameter, `client_id` without `client_secret` or \
            the reverse, or credentials both in the form and in HTTP Basic), \
            `UNSUPPORTED_GRANT_TYPE` (`unsupported_grant_type`), or `INVALID_CLIENT` \
            (`invalid_client`) for wrong credentials sent in the form.", body = ErrorBody<'_>),
        (status = 401, description = "`INVALID_CLIENT` (`error`: `invalid_client`): no \
            credentials, wrong credentials sent by HTTP Basic, or an `Authorization` header that \
            is not valid HTTP Basic.", body = ErrorBody<'_>,
            headers(("WWW-Authenticate" = String, description = "`Basic realm=\"customer-registration\"`"))),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorBody<'_>),
        (status = 500, description = "`INTERNAL`", body = ErrorBody<'_>),
        (status = 503, description = "`DATABASE_UNAVAILABLE`: the database cannot be reached; retry.",
            body = ErrorBody<'_>, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn token(State(core): State<Core>, request: Request) -> Response {
    no_store(issue(&core, request).await)
}

async fn issue(core: &Core, request: Request) -> Result<Response, ApiError> {
    let (form, basic) = read_form(core, request).await?;
    if form.grant_type.as_deref() != Some("client_credentials") {
        return Err(match form.grant_type {
            None => ApiError::InvalidOauthRequest("grant_type is required"),
            Some(_) => ApiError::UnsupportedGrantType,
        });
    }
    let credentials = client_credentials(basic, form.client_id, form.client_secret)?;
    let issued = hosts::issue_access_token(core, &credentials.id, &credentials.secret)
        .await
        .map_err(|e| credentials.refusal(e))?;
    Ok(Json(TokenBody {
        access_token: issued.access_token,
        token_type: issued.token_type,
        expires_in: issued.expires_in,
    })
    .into_response())
}

/// Revoke an access token
///
/// RFC 7009. The answer is the same whether or not the token existed or
/// belonged to the client, so it cannot be used to probe tokens.
#[utoipa::path(
    post,
    path = "/oauth/revoke",
    operation_id = "revokeAccessToken",
    tag = "oauth",
    request_body(content = RevokeForm, content_type = "application/x-www-form-urlencoded"),
    security((), ("clientBasic" = [])),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke; the body is empty.",
            headers(("Cache-Control" = String, description = "`no-store`"))),
        (status = 400, description = "`INVALID_REQUEST` (`error`: `invalid_request`): not a \
            form, no `token`, a repeated parameter, or two client authentication methods; or \
            `INVALID_CLIENT` (`invalid_client`) for wrong credentials sent in the form.",
            body = ErrorBody<'_>),
        (status = 401, description = "`INVALID_CLIENT` (`error`: `invalid_client`): no \
            credentials, or wrong ones sent by HTTP Basic.",
            body = ErrorBody<'_>,
            headers(("WWW-Authenticate" = String, description = "`Basic realm=\"customer-registration\"`"))),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`", body = ErrorBody<'_>),
        (status = 500, description = "`INTERNAL`", body = ErrorBody<'_>),
        (status = 503, description = "`DATABASE_UNAVAILABLE`: the database cannot be reached; retry.",
            body = ErrorBody<'_>, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn revoke(State(core): State<Core>, request: Request) -> Response {
    no_store(revoke_token(&core, request).await)
}

/// RFC 7009 §2.2: 200 with an empty body once the client is authenticated,
/// whether or not the token was valid.
async fn revoke_token(core: &Core, request: Request) -> Result<Response, ApiError> {
    let (form, basic) = read_form(core, request).await?;
    let credentials = client_credentials(basic, form.client_id, form.client_secret)?;
    let token = form
        .token
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::InvalidOauthRequest("token is required"))?;
    hosts::revoke_access_token(core, &credentials.id, &credentials.secret, &token)
        .await
        .map_err(|e| credentials.refusal(e))?;
    Ok(StatusCode::OK.into_response())
}

/// The form body and any HTTP Basic credentials. A body that is not a form
/// is an `invalid_request` (RFC 6749 §5.2), not a 415.
async fn read_form(
    core: &Core,
    request: Request,
) -> Result<(OauthForm, Option<(String, String)>), ApiError> {
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(ApiError::InvalidOauthRequest(
            "the body must be sent as application/x-www-form-urlencoded",
        ));
    }
    let basic = basic_credentials(request.headers())?;
    let body = read_body(request, core).await?;
    let form = parse_form(&body)?;
    Ok((form, basic))
}

/// RFC 6749 §3.2: parameters may not repeat.
fn parse_form(body: &[u8]) -> Result<OauthForm, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|_| ApiError::InvalidOauthRequest("the body is not a valid form"))?;
    let mut names: Vec<&str> = pairs.iter().map(|(name, _)| name.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(ApiError::InvalidOauthRequest(
            "a parameter may be sent only once",
        ));
    }
    serde_urlencoded::from_bytes(body)
        .map_err(|_| ApiError::InvalidOauthRequest("the body is not a valid form"))
}

/// The client's id and secret, and how they came.
struct ClientCredentials {
    id: String,
    secret: String,
    by_basic: bool,
}

impl ClientCredentials {
    /// RFC 6749 §5.2: a failed HTTP Basic authentication is a 401 with a
    /// challenge; one in the form a 400, so a browser does not prompt.
    fn refusal(&self, error: CoreError) -> ApiError {
        match error {
            CoreError::InvalidClient if !self.by_basic => ApiError::InvalidClientInForm,
            other => other.into(),
        }
    }
}

/// One client authentication method: HTTP Basic or the form fields.
fn client_credentials(
    basic: Option<(String, String)>,
    client_id: Option<String>,
    client_secret: Option<String>,
) -> Result<ClientCredentials, ApiError> {
    match (basic, client_id, client_secret) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(ApiError::InvalidOauthRequest(
            "use one client authentication method: HTTP Basic or form fields",
        )),
        (Some((id, secret)), None, None) => Ok(ClientCredentials {
            id,
            secret,
            by_basic: true,
        }),
        (None, Some(id), Some(secret)) => Ok(ClientCredentials {
            id,
            secret,
            by_basic: false,
        }),
        (None, Some(_), None) | (None, None, Some(_)) => Err(ApiError::InvalidOauthRequest(
            "client_id and client_secret go together",
        )),
        (None, None, None) => Err(CoreError::InvalidClient.into()),
    }
}

/// RFC 6749 §5.1: token responses, and so their errors, must not be cached
/// by the client or any proxy; `Pragma` for HTTP/1.0 caches.
fn no_store(result: Result<Response, ApiError>) -> Response {
    let mut response = match result {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// HTTP Basic client authentication; RFC 6749 §2.3.1 form-encodes both parts.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| invalid_client())?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Err(invalid_client());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(invalid_client());
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
