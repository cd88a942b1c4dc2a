//! Account groups a registration can name; managed from the CLI. Groups
//! are only ever added: a register trusts a group once found
//! (`crate::known_groups`).
use anyhow::Context;
use entity::account_group;
use sea_orm::{ActiveValue::Set, EntityTrait, QueryOrder};
use serde::Serialize;

use crate::{
    domain::AccountGroupId,
    error::{CoreError, CoreResult, FieldError},
    state::Core,
};

#[derive(Debug, Clone, Serialize)]
pub struct AccountGroup {
    pub id: String,
    pub name: String,
}

pub async fn add_group(core: &Core, id: &str, name: &str) -> CoreResult<AccountGroup> {
    let id = AccountGroupId::parse(id)
        .map_err(|e| CoreError::Validation(vec![FieldError::on("id", e)]))?;
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(CoreError::field(
            "name",
            "invalid_length",
            "name must be 1 to 100 characters",
        ));
    }
    let row = account_group::ActiveModel {
        id: Set(id.as_str().to_owned()),
        name: Set(name.to_owned()),
        created_at: Set(core.clock.now()),
    };
    match account_group::Entity::insert(row).exec(&core.db).await {
        Ok(_) => Ok(AccountGroup {
            id: id.as_str().to_owned(),
            name: name.to_owned(),
        }),
        Err(e) if super::is_unique_violation(&e) => Err(CoreError::field(
            "id",
            "taken",
            format!("account group {} already exists", id.as_str()),
        )),
        Err(e) => Err(anyhow::Error::new(e)
            .context("Failed to insert account group")
            .into()),
    }
}

pub async fn list_groups(core: &Core) -> CoreResult<Vec<AccountGroup>> {
    let groups = account_group::Entity::find()
        .order_by_asc(account_group::Column::Id)
        .all(&core.db)
        .await
        .context("Failed to list account groups")?;
    Ok(groups
        .into_iter()
        .map(|g| AccountGroup {
            id: g.id,
            name: g.name,
        })
        .collect())
}

/// Whether `group` names an account group: from what this instance has
/// found before, else from the database.
pub async fn exists(core: &Core, group: &AccountGroupId) -> CoreResult<bool> {
    if core.account_groups.contains(group.as_str()) {
        return Ok(true);
    }
    let found = account_group::Entity::find_by_id(group.as_str().to_owned())
        .one(&core.db)
        .await
        .context("Failed to look up account group")?
        .is_some();
    if found {
        core.account_groups.remember(group.as_str());
    }
    Ok(found)
}

/// The refusal of a registration whose group is not (or no longer) there.
pub fn unknown(group: &AccountGroupId) -> FieldError {
    FieldError::new(
        "accountGroupId",
        "unknown_account_group",
        format!(
            "accountGroupId {} does not name an account group",
            group.as_str()
        ),
    )
}

/// A registration naming `group` broke a foreign key on its write. If the
/// group is gone (deleted by hand after this instance found it), it is
/// forgotten and the applicant told, as if it had never been found;
/// otherwise the key was another one and `error` stands.
pub async fn refused_by_foreign_key(
    core: &Core,
    group: &AccountGroupId,
    error: CoreError,
) -> CoreError {
    core.account_groups.forget(group.as_str());
    match exists(core, group).await {
        Ok(false) => CoreError::Validation(vec![unknown(group)]),
        Ok(true) => error,
        Err(lookup) => lookup,
    }
}
