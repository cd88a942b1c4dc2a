use async_graphql_axum::GraphQLResponse;
use axum::{
    Extension,
    extract::{Request, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};

use super::{
    HttpState,
    json::{read_body, require_json_content_type},
};
use crate::{error::AppError, graphql, service::hosts::AuthenticatedHost};

pub async fn execute(
    State(state): State<HttpState>,
    Extension(host): Extension<AuthenticatedHost>,
    request: Request,
) -> Result<Response, AppError> {
    require_json_content_type(request.headers())?;
    let body = read_body(request, &state).await?;
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(AppError::BatchNotSupported);
    }
    let gql_request: async_graphql::Request =
        serde_json::from_slice(&body).map_err(|e| AppError::MalformedJson(e.to_string()))?;
    if let Err(violation) =
        graphql::check_operation_policy(&gql_request.query, gql_request.operation_name.as_deref())
    {
        let error: async_graphql::Error = violation.into();
        let response =
            async_graphql::Response::from_errors(vec![error.into_server_error(Default::default())]);
        return Ok((StatusCode::BAD_REQUEST, GraphQLResponse::from(response)).into_response());
    }
    let gql_request = graphql::request_loaders(&state.core, gql_request.data(host));
    Ok(GraphQLResponse::from(state.schema.execute(gql_request).await).into_response())
}
