//! The counters' rows in `send_quota`: added to in one statement, read
//! back as stored.
use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use entity::send_quota;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, QueryResult,
    sea_query::{Expr, ExprTrait, InsertStatement, OnConflict, Query},
};

use crate::{db::together, error::CoreResult, service::write};

/// Adds `n` to each (scope, window start) counter in one statement and
/// returns their new totals in the order of `windows`, this addition
/// included. Request limits (`service::request_limits`) store their
/// batched counts with it.
pub(crate) async fn add(
    db: &impl ConnectionTrait,
    windows: &[(&str, DateTime<Utc>)],
    n: i32,
) -> CoreResult<Vec<i32>> {
    let additions = windows
        .iter()
        .map(|(row, window_start)| Addition {
            row,
            window_start: *window_start,
            used: n,
            granted: 0,
        })
        .collect::<Vec<_>>();
    let totals = add_each(db, &additions, Vec::new()).await?;
    Ok(totals.into_iter().map(|(used, _)| used).collect())
}

/// What one counter's row gets added: sends counted, allowance granted.
pub(super) struct Addition<'a> {
    pub(super) row: &'a str,
    pub(super) window_start: DateTime<Utc>,
    pub(super) used: i32,
    pub(super) granted: i32,
}

/// Adds each addition to its (scope, window start) row in one statement,
/// in the order given, and returns the rows' new `used` and `granted` in
/// that order: read with RETURNING in the same statement, or, on MySQL,
/// which has none for upserts, by a locking read in the caller's
/// transaction (the rows stay locked until it ends; locking, the read sees
/// the latest values even of a row the upsert left unchanged). Each row
/// appears at most once. The inserts `ahead` go first, with the statement
/// on PostgreSQL (`db::together`).
pub(super) async fn add_each(
    db: &impl ConnectionTrait,
    additions: &[Addition<'_>],
    mut ahead: Vec<InsertStatement>,
) -> CoreResult<Vec<(i32, i32)>> {
    let backend = db.get_database_backend();
    let columns = ROW_COLUMNS;
    let mut upsert = Query::insert();
    upsert.into_table(send_quota::Entity).columns(columns);
    for addition in additions {
        upsert
            .values([
                addition.row.into(),
                addition.window_start.into(),
                addition.used.into(),
                addition.granted.into(),
            ])
            .context("Failed to build a quota count")?;
    }
    // Each row adds its own values: those it would have inserted.
    let inserted = |column: &str| {
        if backend == DbBackend::MySql {
            format!("VALUES(`{column}`)")
        } else {
            format!("excluded.{column}")
        }
    };
    upsert.on_conflict(
        OnConflict::columns([send_quota::Column::Scope, send_quota::Column::WindowStart])
            .values([
                (
                    send_quota::Column::Used,
                    Expr::col((send_quota::Entity, send_quota::Column::Used))
                        .add(Expr::cust(inserted("used"))),
                ),
                (
                    send_quota::Column::Granted,
                    Expr::col((send_quota::Entity, send_quota::Column::Granted))
                        .add(Expr::cust(inserted("granted"))),
                ),
            ])
            .to_owned(),
    );
    let refused = |error| write::new_rows_refused(error, "Failed to count against a quota");
    let rows = if backend == DbBackend::MySql {
        ahead.push(upsert);
        together::execute_all(db, ahead).await.map_err(refused)?;
        let mut keys = Condition::any();
        for addition in additions {
            keys = keys.add(
                Condition::all()
                    .add(send_quota::Column::Scope.eq(addition.row))
                    .add(send_quota::Column::WindowStart.eq(addition.window_start)),
            );
        }
        let read = Query::select()
            .columns(columns)
            .from(send_quota::Entity)
            .cond_where(keys)
            .lock_exclusive()
            .take();
        db.query_all(&read)
            .await
            .context("Failed to read a quota")?
    } else {
        upsert.returning(Query::returning().columns(columns));
        together::query_after(db, ahead, upsert)
            .await
            .map_err(refused)?
    };
    let mut stored = HashMap::with_capacity(rows.len());
    for row in rows {
        let row = StoredRow::read(&row)?;
        stored.insert((row.scope, row.window_start), (row.used, row.granted));
    }
    // The rows were just written in this transaction: one missing means the
    // transaction is no longer there (a Galera node rolled it back for
    // another node's write set and the read ran outside it), so it is run
    // again whole, like any lost race.
    additions
        .iter()
        .map(|addition| {
            stored
                .get(&(addition.row.to_owned(), addition.window_start))
                .copied()
                .ok_or_else(|| anyhow::Error::new(crate::db::TransactionEndedByCluster).into())
        })
        .collect()
}

/// A counter's row as stored, read from a statement that returned
/// [`ROW_COLUMNS`].
pub(super) struct StoredRow {
    pub(super) scope: String,
    pub(super) window_start: DateTime<Utc>,
    pub(super) used: i32,
    pub(super) granted: i32,
}

pub(super) const ROW_COLUMNS: [send_quota::Column; 4] = [
    send_quota::Column::Scope,
    send_quota::Column::WindowStart,
    send_quota::Column::Used,
    send_quota::Column::Granted,
];

impl StoredRow {
    pub(super) fn read(row: &QueryResult) -> CoreResult<Self> {
        Ok(Self {
            scope: row
                .try_get("", "scope")
                .context("Failed to read a quota's scope")?,
            window_start: row
                .try_get("", "window_start")
                .context("Failed to read a quota's window")?,
            used: row
                .try_get("", "used")
                .context("Failed to read a quota count")?,
            granted: row
                .try_get("", "granted")
                .context("Failed to read a quota's allowance")?,
        })
    }
}
