//! A host's one endpoint: set (with a new signing secret) and disabled.
use anyhow::Context;
use entity::webhook_endpoint;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, sea_query::OnConflict};
use secrecy::{ExposeSecret, SecretString};

use crate::{
    crypto::generate_webhook_secret,
    domain::WebhookUrl,
    error::{CoreError, CoreResult, FieldError},
    service::hosts,
    state::Core,
};

/// Shown once, when an endpoint is registered: only a sealed copy is kept.
pub struct NewEndpoint {
    pub url: String,
    pub secret: SecretString,
}

/// Registers (or replaces) the host's endpoint with a new signing secret,
/// and enables it. Events queued before go to the new URL, signed with the
/// new secret.
pub async fn set_endpoint(core: &Core, host_name: &str, url: &str) -> CoreResult<NewEndpoint> {
    let url = WebhookUrl::parse(url)
        .map_err(|invalid| CoreError::Validation(vec![FieldError::on("url", invalid)]))?;
    let host = hosts::find_by_name(core, host_name).await?;
    let secret = generate_webhook_secret();
    let row = webhook_endpoint::ActiveModel {
        host_id: Set(host.id),
        url: Set(url.as_str().to_owned()),
        secret: Set(core.keys.seal(host.id.as_bytes(), secret.expose_secret())),
        created_at: Set(core.clock.now()),
        disabled_at: Set(None),
    };
    webhook_endpoint::Entity::insert(row)
        .on_conflict(
            OnConflict::column(webhook_endpoint::Column::HostId)
                .update_columns([
                    webhook_endpoint::Column::Url,
                    webhook_endpoint::Column::Secret,
                    webhook_endpoint::Column::CreatedAt,
                    webhook_endpoint::Column::DisabledAt,
                ])
                .to_owned(),
        )
        .exec(&core.db)
        .await
        .context("Failed to store the webhook endpoint")?;
    tracing::info!(host = %host.name, "webhook endpoint set");
    Ok(NewEndpoint {
        url: url.as_str().to_owned(),
        secret,
    })
}

/// Stops events to the host's endpoint: none are queued any more, and
/// those queued die at their next try. Returns whether it was enabled.
pub async fn disable_endpoint(core: &Core, host_name: &str) -> CoreResult<bool> {
    let host = hosts::find_by_name(core, host_name).await?;
    let exists = webhook_endpoint::Entity::find_by_id(host.id)
        .one(&core.db)
        .await
        .context("Failed to look up the webhook endpoint")?
        .is_some();
    if !exists {
        return Err(CoreError::field(
            "name",
            "no_webhook",
            format!("host {host_name} has no webhook endpoint"),
        ));
    }
    let disabled = webhook_endpoint::Entity::update_many()
        .col_expr(
            webhook_endpoint::Column::DisabledAt,
            sea_orm::sea_query::Expr::value(core.clock.now()),
        )
        .filter(webhook_endpoint::Column::HostId.eq(host.id))
        .filter(webhook_endpoint::Column::DisabledAt.is_null())
        .exec(&core.db)
        .await
        .context("Failed to disable the webhook endpoint")?;
    tracing::info!(host = %host.name, "webhook endpoint disabled");
    Ok(disabled.rows_affected > 0)
}
