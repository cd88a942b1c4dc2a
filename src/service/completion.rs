//! The completion link from the registration email.
use anyhow::Context;
use entity::{
    completion_link, host, registration,
    states::{Language, RegistrationStatus},
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::{
    client::ClientPresence,
    hosts::AuthenticatedHost,
    registration::{
        ConfirmedVia, Field, ResendInput, confirm_parsed,
        queries::current_code,
        resend_sms,
        views::{ConfirmedRegistration, RegistrationTicket},
    },
};
use crate::{
    crypto::sha256_hex,
    domain::{NewPassword, PhoneNumber, SmsCode},
    error::{CoreError, CoreResult, FieldError},
    state::Core,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// The registration waits for its code.
    Open,
    /// The customer exists; the link has done its job.
    Completed,
    Expired,
    /// Unknown, replaced by a newer email, or its registration was replaced.
    Invalid,
}

#[derive(Debug, Clone)]
pub struct LinkStatus {
    pub state: LinkState,
    pub language: Language,
    /// `+62 812-****-7890`, when the link belongs to a registration.
    pub masked_phone: Option<String>,
    /// Prefix of the current SMS token, while open.
    pub token_prefix: Option<String>,
}

/// What the page behind a completion link should show. Never reveals
/// anything for an unknown token.
pub async fn inspect_link(core: &Core, token: &str) -> CoreResult<LinkStatus> {
    let invalid = LinkStatus {
        state: LinkState::Invalid,
        language: core.settings.delivery.default_language,
        masked_phone: None,
        token_prefix: None,
    };
    let Some((link, registration, host)) = find_link(core, token).await? else {
        return Ok(invalid);
    };
    let language = registration.language;
    let masked_phone =
        Some(PhoneNumber::from_stored(registration.phone.clone()).masked_for_display());
    let state = link_state(core, &link, &registration, &host);
    let token_prefix = if state == LinkState::Open {
        Some(current_code(&core.db, registration.id).await?.prefix)
    } else {
        None
    };
    Ok(LinkStatus {
        state,
        language,
        masked_phone: masked_phone.filter(|_| state != LinkState::Invalid),
        token_prefix,
    })
}

async fn find_link(
    core: &Core,
    token: &str,
) -> CoreResult<Option<(completion_link::Model, registration::Model, host::Model)>> {
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    let found = completion_link::Entity::find()
        .filter(completion_link::Column::TokenHash.eq(sha256_hex(token)))
        .find_also_related(registration::Entity)
        .one(&core.db)
        .await
        .context("Failed to look up completion link")?;
    let Some((link, Some(registration))) = found else {
        return Ok(None);
    };
    let host = host::Entity::find_by_id(registration.host_id)
        .one(&core.db)
        .await
        .context("Failed to load host")?
        .ok_or_else(|| anyhow::anyhow!("registration without host"))?;
    Ok(Some((link, registration, host)))
}

/// A disabled host's links stop working: the page acts on its behalf.
fn link_state(
    core: &Core,
    link: &completion_link::Model,
    registration: &registration::Model,
    host: &host::Model,
) -> LinkState {
    if registration.status == RegistrationStatus::Completed || link.used_at.is_some() {
        LinkState::Completed
    } else if registration.status != RegistrationStatus::Pending
        || link.superseded_at.is_some()
        || host.disabled_at.is_some()
    {
        LinkState::Invalid
    } else if link.expires_at <= core.clock.now() {
        LinkState::Expired
    } else {
        LinkState::Open
    }
}

/// The open link's registration and the host that started it, on whose
/// behalf the page acts; the error a closed link deserves otherwise.
async fn open_link(
    core: &Core,
    token: &str,
) -> CoreResult<(
    completion_link::Model,
    registration::Model,
    AuthenticatedHost,
)> {
    let Some((link, registration, host)) = find_link(core, token).await? else {
        return Err(CoreError::CompletionLinkInvalid);
    };
    match link_state(core, &link, &registration, &host) {
        LinkState::Open => {}
        LinkState::Completed => return Err(CoreError::RegistrationCompleted),
        LinkState::Expired => return Err(CoreError::CompletionLinkExpired),
        LinkState::Invalid => return Err(CoreError::CompletionLinkInvalid),
    }
    Ok((link, registration, AuthenticatedHost::from_row(host)))
}

/// What the customer typed on the completion page.
pub struct CompletionForm<'a> {
    /// The SMS digits, or the whole token with its prefix.
    pub code: &'a str,
    pub password: &'a str,
    pub password_confirmation: &'a str,
}

/// Completes the registration from the page: checks the password policy,
/// hashes the password as the API clients do (MD5, upper-case hex) and runs
/// the very confirm operation of the API, so every rule applies alike.
pub async fn complete_via_link(
    core: &Core,
    token: &str,
    form: CompletionForm<'_>,
    client: &ClientPresence,
) -> CoreResult<ConfirmedRegistration> {
    let (link, registration, host) = open_link(core, token).await?;
    let current_prefix = current_code(&core.db, registration.id).await?.prefix;
    let typed = form.code.trim();
    let full_token = if typed.starts_with(|c: char| c.is_ascii_alphabetic()) {
        typed.to_owned()
    } else {
        format!("{current_prefix}{typed}")
    };
    let mut errors = Vec::new();
    let code = SmsCode::parse(&full_token)
        .map_err(|_| {
            errors.push(FieldError::new(
                "code",
                "invalid_token_format",
                "enter the digits from the SMS",
            ));
        })
        .ok();
    let digits: String = registration
        .phone
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let mut context: Vec<&str> = registration.name.split_whitespace().collect();
    context.push(&digits);
    context.push(&registration.birth_place);
    let password = NewPassword::parse(form.password, form.password_confirmation, &context)
        .map_err(|rejected| {
            errors.extend(rejected.password.map(|e| FieldError::on("password", e)));
            errors.extend(
                rejected
                    .confirmation
                    .map(|e| FieldError::on("passwordConfirmation", e)),
            );
        })
        .ok();
    let (Some(code), Some(password)) = (code, password) else {
        return Err(CoreError::Validation(errors));
    };
    let phone = PhoneNumber::from_stored(registration.phone.clone());
    confirm_parsed(
        core,
        &host,
        &phone,
        &password.md5_hex(),
        &code,
        ConfirmedVia::EmailLink { link_id: link.id },
        client,
    )
    .await
}

/// "Send a new code" on the page: the API's resend, with its cooldown and caps.
pub async fn resend_sms_via_link(core: &Core, token: &str) -> CoreResult<RegistrationTicket> {
    let (_, registration, host) = open_link(core, token).await?;
    let request = ResendInput {
        username: Field::Present(registration.phone.clone()),
        phone: Field::Present(registration.phone),
    };
    resend_sms(core, &host, request).await
}
