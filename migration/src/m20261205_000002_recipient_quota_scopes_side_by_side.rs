//! A recipient's two quota counters side by side in `send_quota`'s key.
//! A send is counted for its recipient (`sms:recipient:HASH`) and for its
//! host and recipient, which was keyed `sms:host-recipient:HOST:HASH`: the
//! two rows of one recipient sat in two distant places of the key's index,
//! and each new recipient's counters wrote two of its pages where one does.
//! The host-and-recipient counter is now keyed `sms:recipient:HASH:host:HOST`,
//! next to the recipient's own. The recipient hashes are random, so a
//! register batch's new counters fall all over the index: on SQLite, whose
//! log takes every page a commit changed, one page fewer a recipient wrote
//! a third less log for the counters in a model of the table (26.5 → 17.6
//! KB a register with email; docs/PERFORMANCE.md, session 36).
//!
//! This rewrites the counters already there (of every window: the older
//! ones go with retention as before). During a rolling deploy, instances
//! still on the old version count a host's sends to a recipient under the
//! old key, which the new ones do not read: for those minutes the
//! host-and-recipient quota may let through up to twice its limit. The
//! recipient's own quota, the host's and the global one are unaffected.
use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Both key formats are fixed-width: a recipient hash and a host id are 32
/// hexadecimal characters each (`service::quotas::scopes_of`).
const HEX: usize = 32;
const CHANNELS: [&str; 2] = ["sms", "email"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        for channel in CHANNELS {
            // `{channel}:host-recipient:HOST:HASH` → `{channel}:recipient:HASH:host:HOST`
            let old = format!("{channel}:host-recipient:");
            let host = old.len() + 1;
            let hash = host + HEX + 1;
            let new = concat(
                backend,
                &[
                    format!("'{channel}:recipient:'"),
                    format!("substr(scope, {hash}, {HEX})"),
                    "':host:'".to_owned(),
                    format!("substr(scope, {host}, {HEX})"),
                ],
            );
            rewrite(manager, &new, &format!("{old}%")).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        for channel in CHANNELS {
            // `{channel}:recipient:HASH:host:HOST` → `{channel}:host-recipient:HOST:HASH`
            let new = format!("{channel}:recipient:");
            let hash = new.len() + 1;
            let host = hash + HEX + ":host:".len();
            let old = concat(
                backend,
                &[
                    format!("'{channel}:host-recipient:'"),
                    format!("substr(scope, {host}, {HEX})"),
                    "':'".to_owned(),
                    format!("substr(scope, {hash}, {HEX})"),
                ],
            );
            rewrite(manager, &old, &format!("{new}%:host:%")).await?;
        }
        Ok(())
    }
}

/// `a || b || ...`, or MySQL's `CONCAT(a, b, ...)` (its `||` is `OR`).
fn concat(backend: DbBackend, parts: &[String]) -> String {
    match backend {
        DbBackend::MySql => format!("CONCAT({})", parts.join(", ")),
        _ => parts.join(" || "),
    }
}

async fn rewrite(manager: &SchemaManager<'_>, scope: &str, like: &str) -> Result<(), DbErr> {
    manager
        .get_connection()
        .execute_unprepared(&format!(
            "UPDATE send_quota SET scope = {scope} WHERE scope LIKE '{like}'"
        ))
        .await
        .map(|_| ())
}
