//! `Idempotency-Key` on POST requests, for REST and GraphQL alike: a retry
//! with the same key and body gets the first response back and changes
//! nothing; the same key with another body is refused.
use anyhow::Context;
use axum::{
    body::{Body, to_bytes},
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::error::ApiError;
use crate::{
    crypto::sha256_hex,
    service::{
        hosts::AuthenticatedHost,
        idempotency::{self, Claim},
    },
    state::Core,
};

pub(super) const HEADER: &str = "idempotency-key";

/// The header as the OpenAPI document lists it on each POST operation.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub(super) struct IdempotencyKey {
    /// 1 to 255 visible ASCII characters, chosen by the client, one per
    /// intended operation. A retry with the same key and the same request
    /// gets the first response again (`Idempotent-Replayed: true`) and
    /// changes nothing; the same key with another request is 422
    /// `IDEMPOTENCY_KEY_REUSED`, and while the first still runs 409
    /// `IDEMPOTENCY_REQUEST_IN_PROGRESS`. Answers that say to retry later
    /// (5xx, 429, any `Retry-After`) are not kept. A key outside these
    /// rules is 400 `VALIDATION_FAILED` (`invalid_idempotency_key`).
    #[param(
        rename = "Idempotency-Key",
        value_type = String,
        required = false,
        min_length = 1,
        max_length = 255,
        pattern = "^[!-~]+$"
    )]
    #[allow(
        dead_code,
        reason = "only described, never built: the middleware reads the header"
    )]
    key: Option<String>,
}

pub async fn replay_or_record(
    State(core): State<Core>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if request.method() != Method::POST {
        return Ok(next.run(request).await);
    }
    let Some(key) = request.headers().get(HEADER) else {
        return Ok(next.run(request).await);
    };
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::field(
                "Idempotency-Key",
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
        })?
        .to_owned();
    // Responses are kept per host; without one (a schema read over
    // GraphQL) there is nothing to replay.
    let Some(host) = request.extensions().get::<AuthenticatedHost>().cloned() else {
        return Ok(next.run(request).await);
    };

    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, core.settings.limits.max_body_bytes)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let fingerprint = sha256_hex(&format!(
        "{} {}\n{}",
        parts.method,
        parts.uri,
        String::from_utf8_lossy(&bytes)
    ));
    match idempotency::claim(&core, &host, &key, &fingerprint).await? {
        Claim::New => {}
        Claim::Replay { status, body } => return replay(status, body),
        Claim::Reused => return Err(ApiError::IdempotencyKeyReused),
        Claim::InProgress => return Err(ApiError::IdempotencyInProgress),
    }

    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let (parts, body) = response.into_parts();
    let bytes = to_bytes(body, usize::MAX)
        .await
        .context("Failed to buffer response")?;
    if says_retry_later(parts.status, &parts.headers, &bytes) {
        // Not an outcome: the same request may succeed later, so the key
        // must let it run then instead of replaying this answer.
        idempotency::forget(&core, &host, &key).await?;
    } else {
        let body = String::from_utf8_lossy(&bytes).into_owned();
        idempotency::store_response(&core, &host, &key, parts.status.as_u16(), body).await?;
    }
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

/// Whether a response tells the client to come back later rather than
/// giving an outcome: a server error, a 429 or anything with `Retry-After`
/// over REST; in a GraphQL response, an error whose extensions say so.
fn says_retry_later(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> bool {
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || headers.contains_key(header::RETRY_AFTER)
    {
        return true;
    }
    let Ok(graphql) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    graphql["errors"].as_array().is_some_and(|errors| {
        errors.iter().any(|error| {
            let extensions = &error["extensions"];
            let status = extensions["status"].as_u64().unwrap_or(0);
            status >= 500 || status == 429 || extensions.get("retryAfterSeconds").is_some()
        })
    })
}

/// A stored status that is not an HTTP status is a corrupt row: an error,
/// never a guess.
fn replay(status: u16, body: String) -> Result<Response, ApiError> {
    let status = StatusCode::from_u16(status)
        .with_context(|| format!("stored idempotent response has status {status}"))?;
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(response)
}
