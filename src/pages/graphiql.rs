//! GraphiQL served entirely from this service: the bundles are pinned in
//! `graphiql/package-lock.json`, installed by build.rs and embedded.
use axum::{
    extract::Path,
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Response},
};

use super::set_security_headers;
use crate::http::error::ApiError;

macro_rules! bundle {
    ($file:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/graphiql/", $file)).as_slice()
    };
}

const ASSETS_EMBEDDED: bool = matches!(env!("GRAPHIQL_ASSETS").as_bytes(), b"embedded");

/// GraphiQL's own code needs inline styles; scripts still come only from here.
const GRAPHIQL_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub async fn graphiql_page(headers: HeaderMap) -> Result<Response, ApiError> {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if !wants_html {
        return Err(ApiError::MethodNotAllowed);
    }
    let body = if ASSETS_EMBEDDED {
        include_str!("graphiql/index.html")
    } else {
        include_str!("graphiql/missing.html")
    };
    let mut response = Html(body).into_response();
    set_security_headers(response.headers_mut(), GRAPHIQL_CSP);
    Ok(response)
}

pub async fn graphiql_asset(Path(file): Path<String>) -> Response {
    let (content_type, bytes): (&str, &'static [u8]) = match file.as_str() {
        "graphiql.min.js" => ("text/javascript", bundle!("graphiql.min.js")),
        "graphiql.min.css" => ("text/css", bundle!("graphiql.min.css")),
        "react.production.min.js" => ("text/javascript", bundle!("react.production.min.js")),
        "react-dom.production.min.js" => {
            ("text/javascript", bundle!("react-dom.production.min.js"))
        }
        "init.js" => (
            "text/javascript",
            include_bytes!("graphiql/init.js").as_slice(),
        ),
        "playground.css" => (
            "text/css",
            include_bytes!("graphiql/playground.css").as_slice(),
        ),
        _ => return ApiError::RouteNotFound.into_response(),
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        bytes,
    )
        .into_response()
}
