//! Pages people see in a browser: the completion page behind the email
//! link, and the offline GraphiQL playground. Both work without anything
//! from the internet; the completion page needs no JavaScript at all.
mod graphiql;
mod texts;

use std::{collections::HashMap, sync::LazyLock};

use axum::{
    Router,
    body::Bytes,
    extract::{FromRef, Path, Query, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use minijinja::{Environment, context};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use graphiql::{graphiql_asset, graphiql_page};

use self::texts::{Texts, texts};
use crate::{
    crypto::random_token,
    domain::MIN_PASSWORD_CHARS,
    error::CoreError,
    http::error::{ApiError, core_status},
    service::completion::{self, CompletionForm, LinkState, LinkStatus},
    state::Core,
};

/// The completion page and GraphiQL; handlers take the core through `FromRef`.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Core: FromRef<S>,
{
    let graphiql = Router::new()
        .route("/graphql", get(graphiql_page))
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

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.add_template("page.html", include_str!("templates/page.html"))
        .expect("page template parses");
    env
});

const CSRF_COOKIE: &str = "cr_csrf";

/// What the form shows besides the link's own data.
#[derive(Default)]
struct FormState {
    code: String,
    notice: Option<String>,
    general: Option<String>,
    fields: HashMap<&'static str, String>,
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

enum Explanation {
    Page(Message),
    Fields(HashMap<&'static str, String>),
    General(String),
}

#[derive(Clone, Copy)]
enum Message {
    Csrf,
    Locked,
    PhoneLocked(u64),
}

/// Turns a core error into words next to the right field, in the page's language.
fn explain(error: &CoreError, t: &Texts) -> Explanation {
    let minutes = |seconds: u64| seconds.div_ceil(60).to_string();
    let field =
        |name: &'static str, text: String| Explanation::Fields(HashMap::from([(name, text)]));
    match error {
        CoreError::Validation(fields) => Explanation::Fields(
            fields
                .iter()
                .map(|f| {
                    let text = match (f.field.as_str(), f.code) {
                        ("code", _) => t.code_format.to_owned(),
                        (_, "too_short") => t
                            .password_too_short
                            .replace("{min}", &MIN_PASSWORD_CHARS.to_string()),
                        (_, "too_long") => t.password_too_long.to_owned(),
                        (_, "too_common") => t.password_too_common.to_owned(),
                        (_, "mismatch") => t.password_mismatch.to_owned(),
                        _ => f.message.clone(),
                    };
                    let name = match f.field.as_str() {
                        "code" => "code",
                        "passwordConfirmation" => "passwordConfirmation",
                        _ => "password",
                    };
                    (name, text)
                })
                .collect(),
        ),
        CoreError::TokenInvalid { attempts_remaining } => field(
            "code",
            t.wrong_code.replace("{n}", &attempts_remaining.to_string()),
        ),
        CoreError::TokenExpired => field("code", t.code_expired.to_owned()),
        CoreError::TokenSuperseded => field("code", t.code_superseded.to_owned()),
        CoreError::RegistrationLocked => Explanation::Page(Message::Locked),
        CoreError::PhoneLocked {
            retry_after_seconds,
        } => Explanation::Page(Message::PhoneLocked(*retry_after_seconds)),
        CoreError::ResendTooSoon {
            retry_after_seconds,
        } => Explanation::General(
            t.too_soon
                .replace("{seconds}", &retry_after_seconds.to_string()),
        ),
        CoreError::ResendLimitReached { .. } => Explanation::General(t.resend_limit.to_owned()),
        CoreError::SendQuotaExceeded {
            retry_after_seconds,
            ..
        } => Explanation::General(t.quota.replace("{minutes}", &minutes(*retry_after_seconds))),
        CoreError::ServerBusy { .. } => Explanation::General(t.busy_body.to_owned()),
        _ => Explanation::General(t.generic_error.to_owned()),
    }
}

fn render(
    core: &Core,
    token: &str,
    status: &LinkStatus,
    headers: &HeaderMap,
    form: FormState,
    just_done: bool,
    code: StatusCode,
) -> Response {
    let t = texts(status.language);
    let page = match status.state {
        LinkState::Open => None,
        LinkState::Completed => Some((
            t.done_title,
            if just_done {
                t.done_body
            } else {
                t.already_done_body
            },
            "success",
            StatusCode::OK,
        )),
        LinkState::Expired => Some((t.expired_title, t.expired_body, "error", StatusCode::GONE)),
        LinkState::Invalid => Some((
            t.invalid_title,
            t.invalid_body,
            "error",
            StatusCode::NOT_FOUND,
        )),
    };
    if let Some((heading, message, tone, code)) = page {
        return page_response(
            context! { t, heading, message, tone, view => "message", token },
            code,
            None,
        );
    }
    let csrf = cookie(headers, CSRF_COOKIE)
        .filter(|value| value.len() == 43)
        .unwrap_or_else(|| random_token(32));
    // The summary lists problems in the order the fields appear.
    let mut errors: Vec<minijinja::Value> = ["code", "password", "passwordConfirmation"]
        .into_iter()
        .filter_map(|field| {
            form.fields
                .get(field)
                .map(|message| context! { field, message })
        })
        .collect();
    if let Some(general) = &form.general {
        errors.insert(0, context! { message => general });
    }
    let prefix = status.token_prefix.clone().unwrap_or_default();
    let ctx = context! {
        t,
        view => "form",
        heading => t.title,
        intro => t.intro.replace("{phone}", status.masked_phone.as_deref().unwrap_or_default()),
        code_hint => t.code_hint.replace("{prefix}", &prefix),
        password_hint => t.password_hint.replace("{min}", &MIN_PASSWORD_CHARS.to_string()),
        min_password => MIN_PASSWORD_CHARS,
        prefix,
        token,
        csrf => csrf.clone(),
        code => form.code,
        notice => form.notice,
        errors,
        field_errors => form.fields,
    };
    let secure = core.settings.public_base_url.starts_with("https://");
    let cookie = format!(
        "{CSRF_COOKIE}={csrf}; Path=/complete; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    );
    page_response(ctx, code, Some(cookie))
}

fn message_page(token: &str, status: &LinkStatus, message: Message, code: StatusCode) -> Response {
    let t = texts(status.language);
    let (text, reload) = match message {
        Message::Csrf => (t.csrf_body.to_owned(), true),
        Message::Locked => (t.locked_body.to_owned(), false),
        Message::PhoneLocked(seconds) => (
            t.phone_locked_body
                .replace("{minutes}", &seconds.div_ceil(60).to_string()),
            false,
        ),
    };
    page_response(
        context! { t, heading => t.title, message => text, tone => "error", view => "message", token, reload },
        code,
        None,
    )
}

fn page_response(ctx: minijinja::Value, code: StatusCode, set_cookie: Option<String>) -> Response {
    let html = TEMPLATES
        .get_template("page.html")
        .and_then(|template| template.render(ctx))
        .unwrap_or_else(|error| {
            tracing::error!(error = %error, "page template failed");
            "<!DOCTYPE html><title>Error</title><p>Something went wrong.</p>".to_owned()
        });
    let mut response = (code, Html(html)).into_response();
    if let Some(value) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// Double-submit check: the form's hidden token must equal the cookie set
/// with the page. Another site can neither read the cookie nor, with
/// SameSite=Strict, make the browser send it.
fn csrf_matches(headers: &HeaderMap, submitted: &str) -> bool {
    match cookie(headers, CSRF_COOKIE) {
        Some(expected) if !submitted.is_empty() => {
            bool::from(expected.as_bytes().ct_eq(submitted.as_bytes()))
        }
        _ => false,
    }
}
