//! `POST /graphql` as the GraphQL-over-HTTP specification asks: the
//! response's media type follows `Accept` (`application/graphql-response+json`
//! or `application/json`), a request that cannot run (malformed body,
//! unparsable or invalid document, variables that do not coerce) is a
//! request error without `data` (400 under the new media type), and every
//! error carries `extensions.code`. The operation policy runs on the parsed
//! document before anything else; schema reads need no token.
use async_graphql::Variables;
use axum::{
    Extension,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};
use serde_json::{Map, Value, json};
use tracing::Instrument;

use super::{
    AppSchema, ParsedDocuments, documents::KnownValidation, error::graphql_error,
    loaders::RequestLoaders, policy::check_operation_policy,
};
use crate::{
    error::{AuthFailure, CoreError},
    http::{
        Unidentified,
        error::ApiError,
        json::{read_body, require_json_content_type},
    },
    service::{client::ClientPresence, hosts::AuthenticatedHost},
    state::Core,
};

/// The two media types of GraphQL over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MediaType {
    GraphqlResponse,
    /// The legacy type: request errors answer 200.
    Json,
}

impl MediaType {
    /// The first of the `Accept` entries we can produce; `application/json`
    /// when there is no `Accept` or it names neither.
    fn negotiate(headers: &HeaderMap) -> Self {
        let accept = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|entry| entry.split(';').next().unwrap_or_default().trim());
        for media in accept {
            if media.eq_ignore_ascii_case("application/graphql-response+json") {
                return MediaType::GraphqlResponse;
            }
            if media.eq_ignore_ascii_case("application/json")
                || media == "*/*"
                || media.eq_ignore_ascii_case("application/*")
            {
                return MediaType::Json;
            }
        }
        MediaType::Json
    }

    fn content_type(self) -> &'static str {
        match self {
            MediaType::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
            MediaType::Json => "application/json; charset=utf-8",
        }
    }

    /// A document that could not run: 400 under the new media type; under
    /// `application/json` the specification keeps 200.
    fn request_error_status(self) -> StatusCode {
        match self {
            MediaType::GraphqlResponse => StatusCode::BAD_REQUEST,
            MediaType::Json => StatusCode::OK,
        }
    }
}

pub async fn execute(
    State(core): State<Core>,
    State(schema): State<AppSchema>,
    State(documents): State<ParsedDocuments>,
    host: Option<Extension<AuthenticatedHost>>,
    unidentified: Option<Extension<Unidentified>>,
    request: Request,
) -> Response {
    let media = MediaType::negotiate(request.headers());
    let host = host.map(|Extension(host)| host);
    let unidentified = unidentified.map(|Extension(u)| u.0);
    match run(
        &core,
        &schema,
        &documents,
        host,
        unidentified,
        media,
        request,
    )
    .await
    {
        Ok(response) => response,
        Err(error) => refusal(media, &error),
    }
}

async fn run(
    core: &Core,
    schema: &AppSchema,
    documents: &ParsedDocuments,
    host: Option<AuthenticatedHost>,
    unidentified: Option<AuthFailure>,
    media: MediaType,
    request: Request,
) -> Result<Response, ApiError> {
    let client = request
        .extensions()
        .get::<ClientPresence>()
        .cloned()
        .ok_or_else(|| {
            anyhow::anyhow!("no ClientPresence: http::run_to_completion puts one in every request")
        })?;
    require_json_content_type(request.headers())?;
    let body = read_body(request, &()).await?;
    let params = RequestParams::parse(&body)?;

    let parsed = match documents.parse(&params.query) {
        Ok(parsed) => parsed,
        Err(error) => {
            let error = async_graphql::ServerError::from(error);
            let errors = vec![with_code(
                serde_json::to_value(&error).unwrap_or_default(),
                "GRAPHQL_PARSE_FAILED",
            )];
            return Ok(respond(media, media.request_error_status(), errors, None));
        }
    };
    let shape = check_operation_policy(
        parsed.document(),
        params.operation_name.as_deref(),
        &core.settings.graphql,
    )
    .map_err(ApiError::GraphqlPolicy)?;
    let may_read_schema = shape.introspection_only && core.settings.graphql.introspection;
    let host = match (host, unidentified) {
        (Some(host), _) => Some(host),
        (None, _) if may_read_schema => None,
        (None, failure) => {
            return Err(
                CoreError::Unauthenticated(failure.unwrap_or(AuthFailure::MissingToken)).into(),
            );
        }
    };
    let validation = parsed.validation(params.operation_name.as_deref(), &params.variables);
    if let Some(host) = &host
        && let Some(direct) = validation.as_ref().and_then(KnownValidation::direct)
        && let Some(argument) = direct.argument(&params.variables)
    {
        let response = direct.run(core, host, argument).await;
        return Ok(graphql_response(media, response));
    }
    let mut gql_request =
        async_graphql::Request::new(params.query).variables(Variables::from_json(params.variables));
    if let Some(validation) = validation {
        gql_request = gql_request.data(validation);
    }
    // Parsed once: the policy read this document, the engine runs it.
    gql_request.set_parsed_query(parsed.into_document());
    if let Some(name) = params.operation_name {
        gql_request = gql_request.operation_name(name);
    }
    if let Some(host) = host {
        gql_request = gql_request.data(host);
    }
    let gql_request = gql_request
        .data(RequestLoaders::new(core.clone()))
        .data(client);
    let response = if shape.writes {
        // A mutation's transaction must not be dropped half-way when the
        // client goes away (see `http::run_to_completion`, which lets this
        // endpoint decide): it runs on a task of its own.
        let schema = schema.clone();
        tokio::spawn(
            async move { schema.execute(gql_request).await }.instrument(tracing::Span::current()),
        )
        .await
        .map_err(|failure| anyhow::anyhow!("mutation task failed: {failure}"))?
    } else {
        schema.execute(gql_request).await
    };
    Ok(graphql_response(media, response))
}

/// The members of a GraphQL-over-HTTP request body, checked one by one so
/// each mistake is named.
struct RequestParams {
    query: String,
    operation_name: Option<String>,
    variables: Value,
}

impl RequestParams {
    fn parse(body: &[u8]) -> Result<Self, ApiError> {
        if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(ApiError::BatchNotSupported);
        }
        let value: Value =
            serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
        let Value::Object(mut members) = value else {
            return Err(ApiError::field(
                "body",
                "not_an_object",
                "the request body must be a JSON object with a query",
            ));
        };
        let query = match members.remove("query") {
            Some(Value::String(query)) => query,
            None | Some(Value::Null) => {
                return Err(ApiError::field("query", "required", "query is required"));
            }
            Some(_) => {
                return Err(ApiError::field(
                    "query",
                    "not_a_string",
                    "query must be a string holding the GraphQL document",
                ));
            }
        };
        let operation_name = match members.remove("operationName") {
            None | Some(Value::Null) => None,
            Some(Value::String(name)) => Some(name),
            Some(_) => {
                return Err(ApiError::field(
                    "operationName",
                    "not_a_string",
                    "operationName must be a string or null",
                ));
            }
        };
        let variables = match members.remove("variables") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(Value::Object(variables)) => Value::Object(variables),
            Some(_) => {
                return Err(ApiError::field(
                    "variables",
                    "not_an_object",
                    "variables must be an object or null",
                ));
            }
        };
        match members.remove("extensions") {
            None | Some(Value::Null | Value::Object(_)) => {}
            Some(_) => {
                return Err(ApiError::field(
                    "extensions",
                    "not_an_object",
                    "extensions must be an object or null",
                ));
            }
        }
        Ok(Self {
            query,
            operation_name,
            variables,
        })
    }
}

/// The executed operation's response. Errors before execution (validation,
/// variable coercion, the engine's limits) come without a `path` and leave
/// no `data`: a request error. Every error gets a `code`.
fn graphql_response(media: MediaType, response: async_graphql::Response) -> Response {
    if response.errors.is_empty() {
        // The usual answer, written straight from the engine's value.
        #[derive(serde::Serialize)]
        struct Data<'a> {
            data: &'a async_graphql::Value,
        }
        let bytes = serde_json::to_vec(&Data {
            data: &response.data,
        })
        .unwrap_or_default();
        return with_body(media, StatusCode::OK, bytes);
    }
    let request_error = response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty());
    let mut body = serde_json::to_value(&response).unwrap_or_else(|_| json!({}));
    let errors = body
        .get_mut("errors")
        .and_then(Value::as_array_mut)
        .map(std::mem::take)
        .unwrap_or_default();
    let errors: Vec<Value> = errors
        .into_iter()
        .map(|error| {
            // Errors of our resolvers carry their code; the engine's own are
            // about the request: bad arguments during execution, invalid
            // documents before it.
            let fallback = if request_error {
                "GRAPHQL_VALIDATION_FAILED"
            } else {
                "BAD_USER_INPUT"
            };
            with_code(error, fallback)
        })
        .collect();
    if request_error {
        return respond(media, media.request_error_status(), errors, None);
    }
    let data = body.get_mut("data").map(Value::take);
    respond(
        media,
        StatusCode::OK,
        errors,
        Some(data.unwrap_or(Value::Null)),
    )
}

/// Sets `extensions.code` (and `status`, 400) where the engine left none.
fn with_code(mut error: Value, code: &'static str) -> Value {
    if let Some(object) = error.as_object_mut() {
        let extensions = object
            .entry("extensions")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(extensions) = extensions.as_object_mut()
            && !extensions.contains_key("code")
        {
            extensions.insert("code".into(), json!(code));
            extensions.insert("status".into(), json!(400));
        }
    }
    error
}

fn respond(
    media: MediaType,
    status: StatusCode,
    errors: Vec<Value>,
    data: Option<Value>,
) -> Response {
    let mut body = Map::new();
    if let Some(data) = data {
        body.insert("data".into(), data);
    }
    if !errors.is_empty() {
        body.insert("errors".into(), Value::Array(errors));
    }
    let bytes = serde_json::to_vec(&Value::Object(body)).unwrap_or_default();
    with_body(media, status, bytes)
}

fn with_body(media: MediaType, status: StatusCode, bytes: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media.content_type()),
    );
    response
}

/// A request refused before it ran, in GraphQL's shape: the error's own
/// status (400, 401, 413, 415, ...) and its headers (`WWW-Authenticate`,
/// `Retry-After`), as REST would send them.
fn refusal(media: MediaType, error: &ApiError) -> Response {
    let gql = graphql_error(error).into_server_error(Default::default());
    let mut value = serde_json::to_value(&gql).unwrap_or_else(|_| json!({}));
    if let Some(object) = value.as_object_mut() {
        // No position in the document: the document is not what failed.
        object.remove("locations");
    }
    let mut response = respond(media, error.status(), vec![value], None);
    let rest = error.headers();
    for name in [header::WWW_AUTHENTICATE, header::RETRY_AFTER] {
        if let Some(value) = rest.get(&name) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}
