use axum::{
    extract::{Request, State},
    http::header,
    middleware::Next,
    response::Response,
};

use super::error::ApiError;
use crate::{service::hosts, state::Core};

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
