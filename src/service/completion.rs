//! The completion link from the registration email.
use anyhow::Context;
use entity::{completion_link, registration, sms_token};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use super::views::{STATUS_COMPLETED, STATUS_PENDING};
use crate::{
    crypto::sha256_hex,
    domain::{Language, PhoneNumber},
    error::AppResult,
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
pub async fn inspect_link(core: &Core, token: &str) -> AppResult<LinkStatus> {
    let default_language = Language::from_stored(&core.settings.delivery.default_language);
    let invalid = LinkStatus {
        state: LinkState::Invalid,
        language: default_language,
        masked_phone: None,
        token_prefix: None,
    };
    if token.len() > 128 {
        return Ok(invalid);
    }
    let found = completion_link::Entity::find()
        .filter(completion_link::Column::TokenHash.eq(sha256_hex(token)))
        .find_also_related(registration::Entity)
        .one(&core.db)
        .await
        .context("Failed to look up completion link")?;
    let Some((link, Some(registration))) = found else {
        return Ok(invalid);
    };
    let language = Language::from_stored(&registration.language);
    let masked_phone =
        Some(PhoneNumber::from_stored(registration.phone.clone()).masked_for_display());
    let state = if registration.status == STATUS_COMPLETED || link.used_at.is_some() {
        LinkState::Completed
    } else if registration.status != STATUS_PENDING || link.superseded_at.is_some() {
        LinkState::Invalid
    } else if link.expires_at <= core.clock.now() {
        LinkState::Expired
    } else {
        LinkState::Open
    };
    let token_prefix = if state == LinkState::Open {
        sms_token::Entity::find()
            .filter(sms_token::Column::RegistrationId.eq(registration.id))
            .order_by_desc(sms_token::Column::Attempt)
            .one(&core.db)
            .await
            .context("Failed to load SMS token")?
            .map(|t| t.prefix)
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
