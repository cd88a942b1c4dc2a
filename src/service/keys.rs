//! Every instance must use the same keys. The first start records each
//! key's fingerprint in the database; a later start with another key is
//! refused before it can hash a code or a password differently.
use anyhow::{Context, bail};
use entity::service_key;
use sea_orm::{ActiveValue::Set, EntityTrait, sea_query::OnConflict};

use crate::state::Core;

pub async fn check_fingerprints(core: &Core) -> anyhow::Result<()> {
    let now = core.clock.now();
    for key in core.keys.fingerprints() {
        service_key::Entity::insert(service_key::ActiveModel {
            name: Set(key.name.to_owned()),
            fingerprint: Set(key.current.clone()),
            updated_at: Set(now),
        })
        .on_conflict(
            // A no-op update: the portable "insert unless present" (MySQL
            // has no DO NOTHING).
            OnConflict::column(service_key::Column::Name)
                .update_column(service_key::Column::Name)
                .to_owned(),
        )
        .exec_without_returning(&core.db)
        .await
        .context("Failed to record key fingerprints")?;
        let stored = service_key::Entity::find_by_id(key.name.to_owned())
            .one(&core.db)
            .await
            .context("Failed to read key fingerprints")?
            .with_context(|| format!("fingerprint of {} vanished", key.name))?;
        if stored.fingerprint == key.current {
            continue;
        }
        if key.previous.contains(&stored.fingerprint) {
            // A rotation: the old key is still accepted; the new one is current.
            service_key::Entity::update(service_key::ActiveModel {
                name: Set(key.name.to_owned()),
                fingerprint: Set(key.current.clone()),
                updated_at: Set(now),
            })
            .exec(&core.db)
            .await
            .context("Failed to record the rotated key")?;
            tracing::info!(key = key.name, "key rotation recorded");
            continue;
        }
        let keep_old = match key.name {
            "token_key" => "secrets.previous_token_keys",
            _ => "secrets.retired_password_peppers (with its id)",
        };
        bail!(
            "secrets.{} is not the key this database was used with (fingerprint {}, configured {}): \
             give every instance the same key; to rotate, keep the old one in {keep_old}",
            key.name,
            stored.fingerprint,
            key.current
        );
    }
    Ok(())
}
