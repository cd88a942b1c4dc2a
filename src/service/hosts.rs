//! Partner hosts, their credentials and access tokens (OAuth 2.0 client
//! credentials grant, RFC 6749 §4.4).
use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use entity::{access_token, host};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    sea_query::{Expr, ExprTrait},
};
use serde::Serialize;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::{
    crypto::{random_token, sha256_hex},
    domain::{MonthlySmsBudget, SmsAutofill},
    error::{AuthFailure, CoreError, CoreResult, FieldError},
    service::{outbox, write},
    state::Core,
};

pub use crate::domain::AuthenticatedHost;

/// Shown once, when a host is created; only the secret's hash is kept.
pub struct HostCredentials {
    pub name: String,
    pub client_id: String,
    pub client_secret: String,
}

#[derive(Debug, Serialize)]
pub struct HostSummary {
    pub name: String,
    pub client_id: String,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub monthly_sms_budget: Option<MonthlySmsBudget>,
}

#[derive(Debug)]
pub struct IssuedAccessToken {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u32,
}

pub async fn create_host(core: &Core, name: &str) -> CoreResult<HostCredentials> {
    let name = name.trim();
    let valid_name = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !valid_name {
        return Err(CoreError::field(
            "name",
            "invalid_identifier",
            "a host name is 1 to 100 letters, digits, '-', '_' or '.'",
        ));
    }
    let client_id = format!("host_{}", Uuid::new_v4().simple());
    let client_secret = random_token(32);
    let row = host::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(name.to_owned()),
        client_id: Set(client_id.clone()),
        secret_hash: Set(sha256_hex(&client_secret)),
        created_at: Set(core.clock.now()),
        disabled_at: Set(None),
        webotp_domain: Set(None),
        android_app_hash: Set(None),
        monthly_sms_budget: Set(None),
    };
    match host::Entity::insert(row).exec(&core.db).await {
        Ok(_) => Ok(HostCredentials {
            name: name.to_owned(),
            client_id,
            client_secret,
        }),
        Err(e) if super::is_unique_violation(&e) => Err(CoreError::field(
            "name",
            "taken",
            format!("a host named {name} already exists"),
        )),
        Err(e) => Err(anyhow::Error::new(e)
            .context("Failed to insert host")
            .into()),
    }
}

pub async fn list_hosts(core: &Core) -> CoreResult<Vec<HostSummary>> {
    let hosts = host::Entity::find()
        .order_by_asc(host::Column::Name)
        .all(&core.db)
        .await
        .context("Failed to list hosts")?;
    Ok(hosts
        .into_iter()
        .map(|h| HostSummary {
            name: h.name,
            client_id: h.client_id,
            created_at: h.created_at,
            disabled_at: h.disabled_at,
            monthly_sms_budget: MonthlySmsBudget::from_stored(h.monthly_sms_budget),
        })
        .collect())
}

/// Disables the host; its tokens stop working on the next request, since
/// every request checks the host, its completion links stop working, and
/// its queued messages are cancelled. Returns how many were cancelled.
pub async fn disable_host(core: &Core, name: &str) -> CoreResult<u64> {
    let now = core.clock.now();
    let txn = write::begin(core).await?;
    let result = host::Entity::update_many()
        .col_expr(host::Column::DisabledAt, Expr::value(now))
        .filter(host::Column::Name.eq(name))
        .filter(host::Column::DisabledAt.is_null())
        .exec(&*txn)
        .await
        .context("Failed to disable host")?;
    // Also when it was disabled before: messages queued since are withdrawn.
    let found = host::Entity::find()
        .filter(host::Column::Name.eq(name))
        .one(&*txn)
        .await
        .context("Failed to look up host")?;
    let cancelled = match &found {
        Some(host) => outbox::cancel_for_host(&*txn, host.id, now).await?,
        None => 0,
    };
    write::commit(txn).await?;
    if let Some(host) = &found {
        core.tokens.forget_host(host.id);
    }
    if found.is_none() {
        return Err(CoreError::field(
            "name",
            "not_found",
            format!("no host named {name}"),
        ));
    }
    if result.rows_affected > 0 || cancelled > 0 {
        tracing::info!(host = name, cancelled, "host disabled");
    }
    Ok(cancelled)
}

/// On a database with no host at all, creates one so a newcomer can call
/// the API right away. Returns its credentials, or `None` if hosts exist.
pub async fn bootstrap_first_host(core: &Core) -> CoreResult<Option<HostCredentials>> {
    let count = host::Entity::find()
        .count(&core.db)
        .await
        .context("Failed to count hosts")?;
    if count > 0 {
        return Ok(None);
    }
    bootstrap_host(core, "default").await
}

/// Creates the named host unless it exists. Of several instances starting
/// at once, one creates it and gets the credentials; the others get `None`.
pub async fn bootstrap_host(core: &Core, name: &str) -> CoreResult<Option<HostCredentials>> {
    match create_host(core, name).await {
        Ok(credentials) => Ok(Some(credentials)),
        Err(CoreError::Validation(fields)) if fields.iter().any(|f| f.code == "taken") => Ok(None),
        Err(other) => Err(other),
    }
}

/// The host behind a client id and secret (RFC 6749 §2.3.1), if enabled.
async fn authenticate_client(
    core: &Core,
    client_id: &str,
    client_secret: &str,
) -> CoreResult<host::Model> {
    let found = host::Entity::find()
        .filter(host::Column::ClientId.eq(client_id))
        .one(&core.db)
        .await
        .context("Failed to look up host")?;
    let presented = sha256_hex(client_secret);
    match found {
        Some(host)
            if host.disabled_at.is_none()
                && bool::from(host.secret_hash.as_bytes().ct_eq(presented.as_bytes())) =>
        {
            Ok(host)
        }
        _ => Err(CoreError::InvalidClient),
    }
}

pub async fn issue_access_token(
    core: &Core,
    client_id: &str,
    client_secret: &str,
) -> CoreResult<IssuedAccessToken> {
    let host = authenticate_client(core, client_id, client_secret).await?;
    let token = random_token(32);
    let now = core.clock.now();
    let ttl = core.settings.auth.access_token_ttl_seconds;
    access_token::Entity::insert(access_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        host_id: Set(host.id),
        token_hash: Set(sha256_hex(&token)),
        created_at: Set(now),
        expires_at: Set(now + Duration::seconds(i64::from(ttl))),
        revoked_at: Set(None),
    })
    .exec(&core.db)
    .await
    .context("Failed to store access token")?;
    tracing::info!(host = %host.name, "access token issued");
    Ok(IssuedAccessToken {
        access_token: token,
        token_type: "Bearer",
        expires_in: ttl,
    })
}

/// Resolves an `Authorization` header value to the host it belongs to.
pub async fn authenticate(
    core: &Core,
    authorization: Option<&str>,
) -> CoreResult<AuthenticatedHost> {
    let header = authorization.ok_or(CoreError::Unauthenticated(AuthFailure::MissingToken))?;
    let token = match header.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            token.trim()
        }
        _ => {
            return Err(CoreError::Unauthenticated(AuthFailure::MalformedHeader));
        }
    };
    let token_hash = sha256_hex(token);
    let now = core.clock.now();
    if let Some(host) = core.tokens.get(&token_hash, now) {
        return Ok(host);
    }
    let found = access_token::Entity::find()
        .filter(access_token::Column::TokenHash.eq(&token_hash))
        .find_also_related(host::Entity)
        .one(&core.db)
        .await
        .context("Failed to look up access token")?;
    let Some((token, Some(host))) = found else {
        return Err(CoreError::Unauthenticated(AuthFailure::UnknownToken));
    };
    if token.revoked_at.is_some() || host.disabled_at.is_some() {
        return Err(CoreError::Unauthenticated(AuthFailure::Revoked));
    }
    if token.expires_at <= now {
        return Err(CoreError::Unauthenticated(AuthFailure::Expired));
    }
    let host = AuthenticatedHost::from_row(host);
    core.tokens
        .insert(token_hash, host.clone(), token.expires_at, now);
    Ok(host)
}

/// Sets what the host's SMS carry for autofill (both parts absent: none),
/// after checking every SMS still fits one segment with them.
pub async fn set_autofill(
    core: &Core,
    name: &str,
    webotp_domain: Option<&str>,
    android_app_hash: Option<&str>,
) -> CoreResult<SmsAutofill> {
    let autofill = SmsAutofill::parse(webotp_domain, android_app_hash)
        .map_err(|(field, invalid)| CoreError::Validation(vec![FieldError::on(field, invalid)]))?;
    core.templates.check_sms_fits(&autofill).map_err(|e| {
        CoreError::field(
            if autofill.webotp_domain().is_some() {
                "webotpDomain"
            } else {
                "androidAppHash"
            },
            "sms_too_long",
            format!("with it the SMS no longer fits one segment: {e}"),
        )
    })?;
    let found = find_by_name(core, name).await?;
    host::Entity::update_many()
        .col_expr(
            host::Column::WebotpDomain,
            Expr::value(autofill.webotp_domain().map(str::to_owned)),
        )
        .col_expr(
            host::Column::AndroidAppHash,
            Expr::value(autofill.android_app_hash().map(str::to_owned)),
        )
        .filter(host::Column::Id.eq(found.id))
        .exec(&core.db)
        .await
        .context("Failed to set the host's SMS autofill")?;
    core.tokens.forget_host(found.id);
    tracing::info!(host = name, "SMS autofill set");
    Ok(autofill)
}

/// At start: every host's SMS, with its autofill lines, must still fit one
/// segment (templates can change between releases or by `templates_dir`).
pub async fn check_autofill_fits(core: &Core) -> CoreResult<()> {
    let hosts = host::Entity::find()
        .filter(
            host::Column::WebotpDomain
                .is_not_null()
                .or(host::Column::AndroidAppHash.is_not_null()),
        )
        .all(&core.db)
        .await
        .context("Failed to list hosts with SMS autofill")?;
    for host in hosts {
        let name = host.name.clone();
        let autofill = AuthenticatedHost::from_row(host).autofill;
        core.templates.check_sms_fits(&autofill).with_context(|| {
            format!("host {name}: its SMS autofill lines make the SMS too long")
        })?;
    }
    Ok(())
}

pub(crate) async fn find_by_name(core: &Core, name: &str) -> CoreResult<host::Model> {
    host::Entity::find()
        .filter(host::Column::Name.eq(name))
        .one(&core.db)
        .await
        .context("Failed to look up host")?
        .ok_or_else(|| CoreError::field("name", "not_found", format!("no host named {name}")))
}

/// Gives the host a new client secret; the old one stops working at once.
/// Access tokens already issued stay valid until they expire (see
/// [`revoke_tokens`]).
pub async fn rotate_secret(core: &Core, name: &str) -> CoreResult<HostCredentials> {
    let found = find_by_name(core, name).await?;
    let client_secret = random_token(32);
    host::Entity::update_many()
        .col_expr(
            host::Column::SecretHash,
            Expr::value(sha256_hex(&client_secret)),
        )
        .filter(host::Column::Id.eq(found.id))
        .exec(&core.db)
        .await
        .context("Failed to store the new secret")?;
    tracing::info!(host = %found.name, "client secret rotated");
    Ok(HostCredentials {
        name: found.name,
        client_id: found.client_id,
        client_secret,
    })
}

/// Revokes every access token of the host; returns how many were live.
/// RFC 7009: the client revokes one of its own access tokens. Whether the
/// token existed, was the client's, or was already revoked is not told:
/// the answer is the same, so the endpoint cannot be used to probe tokens.
pub async fn revoke_access_token(
    core: &Core,
    client_id: &str,
    client_secret: &str,
    token: &str,
) -> CoreResult<()> {
    let host = authenticate_client(core, client_id, client_secret).await?;
    let revoked = access_token::Entity::update_many()
        .col_expr(
            access_token::Column::RevokedAt,
            Expr::value(core.clock.now()),
        )
        .filter(access_token::Column::TokenHash.eq(sha256_hex(token)))
        .filter(access_token::Column::HostId.eq(host.id))
        .filter(access_token::Column::RevokedAt.is_null())
        .exec(&core.db)
        .await
        .context("Failed to revoke an access token")?;
    core.tokens.forget_token(&sha256_hex(token));
    if revoked.rows_affected > 0 {
        tracing::info!(host = %host.name, "access token revoked by its client");
    }
    Ok(())
}

pub async fn revoke_tokens(core: &Core, name: &str) -> CoreResult<u64> {
    let found = find_by_name(core, name).await?;
    let revoked = access_token::Entity::update_many()
        .col_expr(
            access_token::Column::RevokedAt,
            Expr::value(core.clock.now()),
        )
        .filter(access_token::Column::HostId.eq(found.id))
        .filter(access_token::Column::RevokedAt.is_null())
        .exec(&core.db)
        .await
        .context("Failed to revoke access tokens")?;
    core.tokens.forget_host(found.id);
    tracing::info!(host = %found.name, count = revoked.rows_affected, "access tokens revoked");
    Ok(revoked.rows_affected)
}
