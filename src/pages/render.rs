//! Rendering the completion page: the form, the message pages, and what
//! each core error means in the customer's language.
use std::{collections::HashMap, sync::LazyLock};

use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use minijinja::{Environment, context};
use subtle::ConstantTimeEq;

use super::texts::{Texts, texts};
use crate::{
    crypto::random_token,
    domain::MIN_PASSWORD_CHARS,
    error::CoreError,
    service::completion::{LinkState, LinkStatus},
    state::Core,
};

#[allow(
    clippy::expect_used,
    reason = "the template is compiled in; every page test renders it"
)]
pub(super) static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.add_template("page.html", include_str!("templates/page.html"))
        .expect("page template parses");
    env
});

pub(super) const CSRF_COOKIE: &str = "cr_csrf";

/// What the form shows besides the link's own data.
#[derive(Default)]
pub(super) struct FormState {
    pub code: String,
    pub notice: Option<String>,
    pub general: Option<String>,
    pub fields: HashMap<&'static str, String>,
}

pub(super) enum Explanation {
    Page(Message),
    Fields(HashMap<&'static str, String>),
    General(String),
}

#[derive(Clone, Copy)]
pub(super) enum Message {
    Csrf,
    Locked,
    PhoneLocked(u64),
}

/// Turns a core error into words next to the right field, in the page's language.
pub(super) fn explain(error: &CoreError, t: &Texts) -> Explanation {
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

pub(super) fn render(
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
    let secure = core.settings.public_base_url().starts_with("https://");
    let cookie = format!(
        "{CSRF_COOKIE}={csrf}; Path=/complete; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    );
    page_response(ctx, code, Some(cookie))
}

pub(super) fn message_page(
    token: &str,
    status: &LinkStatus,
    message: Message,
    code: StatusCode,
) -> Response {
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

pub(super) fn page_response(
    ctx: minijinja::Value,
    code: StatusCode,
    set_cookie: Option<String>,
) -> Response {
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

pub(super) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
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
pub(super) fn csrf_matches(headers: &HeaderMap, submitted: &str) -> bool {
    match cookie(headers, CSRF_COOKIE) {
        Some(expected) if !submitted.is_empty() => {
            bool::from(expected.as_bytes().ct_eq(submitted.as_bytes()))
        }
        _ => false,
    }
}
