use axum::{
    extract::{Request, State},
    http::{HeaderMap, header},
    middleware::Next,
    response::Response,
};

use super::error::ApiError;
use crate::{
    error::{AuthFailure, CoreError},
    service::hosts::{self, AuthenticatedHost},
    state::Core,
};

/// Why a request to a route that may go on without a token has none that
/// works; the handler decides (see `identified`).
#[derive(Debug, Clone, Copy)]
pub struct Unidentified(pub AuthFailure);

/// Every API path requires a valid bearer token; the host it belongs to is
/// put in the request's extensions for the handlers.
pub async fn require_host(
    State(core): State<Core>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let host = bearer_host(&core, request.headers())
        .await?
        .map_err(CoreError::Unauthenticated)?;
    request.extensions_mut().insert(host);
    Ok(next.run(request).await)
}

/// For `/graphql`: the host when the token is good, else why not, for the
/// endpoint to decide (a schema read needs no token).
pub async fn identify_host(
    State(core): State<Core>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    match bearer_host(&core, request.headers()).await? {
        Ok(host) => {
            request.extensions_mut().insert(host);
        }
        Err(failure) => {
            request.extensions_mut().insert(Unidentified(failure));
        }
    }
    Ok(next.run(request).await)
}

/// The host behind the request's bearer token, or why there is none; an
/// error only when the lookup itself failed.
async fn bearer_host(
    core: &Core,
    headers: &HeaderMap,
) -> Result<Result<AuthenticatedHost, AuthFailure>, CoreError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    match hosts::authenticate(core, authorization).await {
        Ok(host) => Ok(Ok(host)),
        Err(CoreError::Unauthenticated(failure)) => Ok(Err(failure)),
        Err(other) => Err(other),
    }
}
