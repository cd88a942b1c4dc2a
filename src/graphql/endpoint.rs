//! `POST /graphql`: reads the request, applies the operation policy and
//! runs it with this request's DataLoaders and the authenticated host.
use async_graphql_axum::GraphQLResponse;
use axum::{
    Extension,
    extract::{Request, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};

use super::{AppSchema, error::graphql_error, policy::check_operation_policy, request_loaders};
use crate::{
    http::{
        error::ApiError,
        json::{read_body, require_json_content_type},
    },
    service::hosts::AuthenticatedHost,
    state::Core,
};

pub async fn execute(
    State(core): State<Core>,
    State(schema): State<AppSchema>,
    Extension(host): Extension<AuthenticatedHost>,
    request: Request,
) -> Result<Response, ApiError> {
    require_json_content_type(request.headers())?;
    let body = read_body(request, &()).await?;
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::BatchNotSupported);
    }
    let gql_request: async_graphql::Request =
        serde_json::from_slice(&body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    if let Err(violation) =
        check_operation_policy(&gql_request.query, gql_request.operation_name.as_deref())
    {
        let error = graphql_error(&violation);
        let response =
            async_graphql::Response::from_errors(vec![error.into_server_error(Default::default())]);
        return Ok((StatusCode::BAD_REQUEST, GraphQLResponse::from(response)).into_response());
    }
    let gql_request = request_loaders(&core, gql_request.data(host));
    Ok(GraphQLResponse::from(schema.execute(gql_request).await).into_response())
}
