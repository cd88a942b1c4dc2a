//! `Idempotency-Key` on POST requests, for REST and GraphQL alike: a retry
//! with the same key and body gets the first response back and changes
//! nothing; the same key with another body is refused.
use anyhow::Context;
use axum::{
    body::{Body, to_bytes},
    extract::{Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use chrono::Duration;
use entity::idempotency_record;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

use super::HttpState;
use crate::{
    crypto::sha256_hex,
    error::{AppError, FieldError},
    service::{hosts::AuthenticatedHost, is_unique_violation},
};

const HEADER: &str = "idempotency-key";
/// How long a key is remembered.
const RETENTION: Duration = Duration::hours(24);

pub async fn replay_or_record(
    State(state): State<HttpState>,
    request: Request,
    next: Next,
) -> Result<Response, AppError> {
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
            AppError::Validation(vec![FieldError::new(
                "Idempotency-Key",
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )])
        })?
        .to_owned();
    let host = request
        .extensions()
        .get::<AuthenticatedHost>()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("idempotency layer runs before authentication"))?;

    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, state.core.settings.limits.max_body_bytes)
        .await
        .map_err(|_| AppError::PayloadTooLarge)?;
    let fingerprint = sha256_hex(&format!(
        "{} {}\n{}",
        parts.method,
        parts.uri,
        String::from_utf8_lossy(&bytes)
    ));
    if let Some(early) = claim_key(&state, &host, &key, &fingerprint).await? {
        return Ok(early);
    }

    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let (parts, body) = response.into_parts();
    let bytes = to_bytes(body, usize::MAX)
        .await
        .context("Failed to buffer response")?;
    if parts.status.is_server_error() {
        // Nothing was done for certain: let the client retry with the key.
        forget(&state, &host, &key).await?;
    } else {
        idempotency_record::Entity::update_many()
            .col_expr(
                idempotency_record::Column::ResponseStatus,
                sea_orm::sea_query::Expr::value(i32::from(parts.status.as_u16())),
            )
            .col_expr(
                idempotency_record::Column::ResponseBody,
                sea_orm::sea_query::Expr::value(String::from_utf8_lossy(&bytes).into_owned()),
            )
            .filter(idempotency_record::Column::HostId.eq(host.id))
            .filter(idempotency_record::Column::IdempotencyKey.eq(&key))
            .exec(&state.core.db)
            .await
            .context("Failed to store idempotent response")?;
    }
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

/// Records the key as in progress. Returns the response to send instead of
/// running the request when the key is already known.
async fn claim_key(
    state: &HttpState,
    host: &AuthenticatedHost,
    key: &str,
    fingerprint: &str,
) -> Result<Option<Response>, AppError> {
    let db = &state.core.db;
    let now = state.core.clock.now();
    // Two rounds at most: the second follows the removal of an expired key.
    for _ in 0..2 {
        let inserted = idempotency_record::Entity::insert(idempotency_record::ActiveModel {
            host_id: Set(host.id),
            idempotency_key: Set(key.to_owned()),
            request_fingerprint: Set(fingerprint.to_owned()),
            response_status: Set(None),
            response_body: Set(None),
            created_at: Set(now),
        })
        .exec(db)
        .await;
        match inserted {
            Ok(_) => return Ok(None),
            Err(e) if is_unique_violation(&e) => {}
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context("Failed to store idempotency key")
                    .into());
            }
        }
        let Some(existing) = idempotency_record::Entity::find_by_id((host.id, key.to_owned()))
            .one(db)
            .await
            .context("Failed to load idempotency record")?
        else {
            continue;
        };
        if existing.created_at + RETENTION < now {
            forget(state, host, key).await?;
            continue;
        }
        if existing.request_fingerprint != fingerprint {
            return Err(AppError::IdempotencyKeyReused);
        }
        return match (existing.response_status, existing.response_body) {
            (Some(status), Some(body)) => Ok(Some(replay(status, body))),
            _ => Err(AppError::IdempotencyInProgress),
        };
    }
    Err(AppError::IdempotencyInProgress)
}

async fn forget(state: &HttpState, host: &AuthenticatedHost, key: &str) -> Result<(), AppError> {
    idempotency_record::Entity::delete_by_id((host.id, key.to_owned()))
        .exec(&state.core.db)
        .await
        .context("Failed to delete idempotency record")?;
    Ok(())
}

fn replay(status: i32, body: String) -> Response {
    let status = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}
