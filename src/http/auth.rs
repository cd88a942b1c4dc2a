use axum::{
    extract::{Request, State},
    http::header,
    middleware::Next,
    response::Response,
};

use super::error::ApiError;
use crate::{
    error::{AuthFailure, CoreError},
    service::hosts,
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
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    let host = hosts::authenticate(&core, authorization).await?;
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
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    match hosts::authenticate(&core, authorization).await {
        Ok(host) => {
            request.extensions_mut().insert(host);
        }
        Err(CoreError::Unauthenticated(failure)) => {
            request.extensions_mut().insert(Unidentified(failure));
        }
        Err(other) => return Err(other.into()),
    }
    Ok(next.run(request).await)
}
