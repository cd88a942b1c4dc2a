//! Pages people see in a browser: the completion page behind the email
//! link, and the offline GraphiQL playground. Both work without anything
//! from the internet; the completion page needs no JavaScript at all.
mod graphiql;
mod render;
mod texts;

use axum::{
    Extension, Router,
    body::Bytes,
    extract::{FromRef, Path, Query, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::Deserialize;

use graphiql::{graphiql_asset, graphiql_page};

use self::{
    render::{Explanation, FormState, Message, csrf_matches, explain, message_page, render},
    texts::texts,
};
use crate::{
    http::{
        self,
        error::{ApiError, core_status},
    },
    service::{
        client::ClientPresence,
        completion::{self, CompletionForm},
    },
    state::Core,
};

/// The completion page and GraphiQL; handlers take the core through `FromRef`.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Core: FromRef<S>,
{
    let graphiql = Router::new()
        .route(http::GRAPHQL_PATH, get(graphiql_page))
        .route("/static/graphiql/{file}", get(graphiql_asset));
    Router::new()
        .route("/complete/{token}", get(show).post(submit))
        .route("/complete/{token}/resend", post(resend))
        .route("/static/complete.css", get(stylesheet))
        .layer(middleware::from_fn(page_security_headers))
        .merge(graphiql)
}

/// A strict policy: nothing but this origin's stylesheet, no scripts at
/// all, forms post only here, no framing, and no Referer carrying the link.
async fn page_security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    set_security_headers(
        response.headers_mut(),
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    response
}

pub(crate) fn set_security_headers(headers: &mut HeaderMap, csp: &'static str) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("static/complete.css"),
    )
        .into_response()
}

#[derive(Deserialize)]
struct ShowQuery {
    done: Option<String>,
}

async fn show(
    State(core): State<Core>,
    Path(token): Path<String>,
    Query(query): Query<ShowQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let status = completion::inspect_link(&core, &token).await?;
    let just_done = query.done.is_some();
    Ok(render(
        &core,
        &token,
        &status,
        &headers,
        FormState::default(),
        just_done,
        StatusCode::OK,
    ))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SubmittedForm {
    csrf: String,
    code: String,
    password: String,
    #[serde(rename = "passwordConfirmation")]
    password_confirmation: String,
}

/// Reads a posted form; a missing or forged CSRF token gets the page that
/// says so instead.
async fn checked_form(
    core: &Core,
    token: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Result<SubmittedForm, Response>, ApiError> {
    let form: SubmittedForm = serde_urlencoded::from_bytes(body).unwrap_or_default();
    if csrf_matches(headers, &form.csrf) {
        return Ok(Ok(form));
    }
    let status = completion::inspect_link(core, token).await?;
    Ok(Err(message_page(
        token,
        &status,
        Message::Csrf,
        StatusCode::FORBIDDEN,
    )))
}

async fn submit(
    State(core): State<Core>,
    Path(token): Path<String>,
    Extension(client): Extension<ClientPresence>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let form = match checked_form(&core, &token, &headers, &body).await? {
        Ok(form) => form,
        Err(refusal) => return Ok(refusal),
    };
    let result = completion::complete_via_link(
        &core,
        &token,
        CompletionForm {
            code: &form.code,
            password: &form.password,
            password_confirmation: &form.password_confirmation,
        },
        &client,
    )
    .await;
    match result {
        Ok(_) => Ok(Redirect::to(&format!("/complete/{token}?done=1")).into_response()),
        Err(error) => {
            // Re-read: a wrong code or a lock changed what the page shows.
            let status = completion::inspect_link(&core, &token).await?;
            let t = texts(status.language);
            let mut form_state = FormState {
                // The code may be shown again; passwords never are.
                code: form
                    .code
                    .chars()
                    .filter(char::is_ascii_alphanumeric)
                    .take(11)
                    .collect(),
                ..FormState::default()
            };
            match explain(&error, t) {
                Explanation::Page(message) => {
                    return Ok(message_page(&token, &status, message, core_status(&error)));
                }
                Explanation::Fields(fields) => form_state.fields = fields,
                Explanation::General(text) => form_state.general = Some(text),
            }
            Ok(render(
                &core,
                &token,
                &status,
                &headers,
                form_state,
                false,
                StatusCode::UNPROCESSABLE_ENTITY,
            ))
        }
    }
}

async fn resend(
    State(core): State<Core>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if let Err(refusal) = checked_form(&core, &token, &headers, &body).await? {
        return Ok(refusal);
    }
    let resent = completion::resend_sms_via_link(&core, &token).await;
    // Read after the resend, so the page shows the new prefix.
    let status = completion::inspect_link(&core, &token).await?;
    let t = texts(status.language);
    let (form_state, code) = match resent {
        Ok(ticket) => (
            FormState {
                notice: Some(t.resend_sent.replace("{prefix}", &ticket.token_prefix)),
                ..FormState::default()
            },
            StatusCode::OK,
        ),
        Err(error) => match explain(&error, t) {
            Explanation::Page(message) => {
                return Ok(message_page(&token, &status, message, core_status(&error)));
            }
            Explanation::Fields(_) => (FormState::default(), StatusCode::OK),
            Explanation::General(text) => (
                FormState {
                    general: Some(text),
                    ..FormState::default()
                },
                core_status(&error),
            ),
        },
    };
    Ok(render(
        &core, &token, &status, &headers, form_state, false, code,
    ))
}
