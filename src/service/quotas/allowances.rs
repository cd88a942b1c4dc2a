//! The host's and the global quota counters, counted without a row that
//! every transaction waits for. Every register and resend of a host counts
//! in its host's counter and in the global one; kept in one row each, a row
//! locked until its transaction commits, concurrent transactions took turns
//! at it through each other's commits (docs/PERFORMANCE.md, session 39).
//!
//! So each is counted in several rows, `scope#N@limit`, one for each of an
//! instance's counting slots (`counting_slots`: a transaction keeps its
//! slot until it ends, so two of this instance's never share one). Each
//! such row counts sends (`used`) against an allowance (`granted`) that
//! the scope's own row (`scope`) granted it; the scope's row records how
//! much it has granted, never more than the limit (less what that row
//! counted itself before allowances: `used`). No row ever counts past its
//! allowance at a commit, so the scope never counts past its limit.
//!
//! A row whose count went past its allowance is granted more from the
//! scope's row: what it needs, and, while plenty is left, up to
//! [`MOST_GRANTED`] more, so that a busy row asks again only now and
//! then. Near the limit the grants shrink to what is needed. When the
//! scope's row has too little left, the allowance other rows hold and do
//! not use is taken back, from every row no other transaction is counting
//! in at that moment (`SKIP LOCKED`), and the send is refused only when
//! that is not enough either. Counting one at a time, exactly `limit`
//! sends go through, as with one row. With transactions counting at once
//! within the last few grants of a limit, one can be refused while another
//! still holds allowance it will not use; never the other way round.
use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use chrono::{DateTime, Utc};
use entity::send_quota;
use sea_orm::{
    ColumnTrait, ConnectionTrait,
    sea_query::{LockBehavior, LockType, Query},
};

use super::rows::{Addition, ROW_COLUMNS, StoredRow, add_each};
use crate::{error::CoreResult, service::write::WriteTxn};

/// The most a row is granted at once, unless it needs more: a busy row
/// asks again after this many sends; a quiet one holds at most this many
/// unused until they are taken back near the limit.
const MOST_GRANTED: i64 = 256;

/// The row of a shared scope that a transaction in `slot` counts in under
/// `limit`. The limit is part of the row's name so that a limit lowered in
/// the configuration holds from its first send: the rows granted allowance
/// under the old limit are no longer counted in, so the first send under
/// the new one finds its row short, and the scope's row, having granted
/// more than the new limit leaves, takes back what those rows hold unused
/// before granting any. Without it a row would go on spending what it was
/// granted under the old limit, up to [`MOST_GRANTED`] a row, until the
/// window ended. A raised limit costs each row one grant.
pub(super) fn counting_row(scope: &str, slot: u32, limit: u32) -> String {
    format!("{scope}#{slot}@{limit}")
}

/// A shared scope's row that counted past its allowance.
pub(super) struct Short<'a> {
    pub row: &'a str,
    pub limit: u32,
    /// How much more allowance the row needs.
    pub need: i32,
}

/// Grants each short row what it needs, scope by scope in key order (the
/// scopes' rows are locked in that order in every transaction). Whether
/// each scope could: `false` is a refusal.
pub(super) async fn top_up<'a>(
    txn: &WriteTxn,
    short: &BTreeMap<(&'a str, DateTime<Utc>), Short<'_>>,
) -> CoreResult<HashMap<(&'a str, DateTime<Utc>), bool>> {
    let mut granted = HashMap::with_capacity(short.len());
    for (&(scope, window_start), row) in short {
        let enough = top_up_one(txn, scope, window_start, row).await?;
        granted.insert((scope, window_start), enough);
    }
    Ok(granted)
}

async fn top_up_one(
    txn: &WriteTxn,
    scope: &str,
    window_start: DateTime<Utc>,
    short: &Short<'_>,
) -> CoreResult<bool> {
    let grant = |row, granted| Addition {
        row,
        window_start,
        used: 0,
        granted,
    };
    // Locks the scope's row (making it if it is the window's first grant)
    // and reads what it has granted.
    let (counted_before, granted_before) =
        add_each(&**txn, &[grant(scope, 0)], Vec::new()).await?[0];
    let left = i64::from(short.limit) - i64::from(counted_before) - i64::from(granted_before);
    let need = i64::from(short.need);
    // With enough left, the scope grants it, and more while plenty is left;
    // otherwise what other rows hold unused comes back to it first, and
    // it grants just what is needed.
    let (granted, spare) = if left >= need {
        let spread = left / i64::from(txn.counting_slots());
        (need.max(spread.min(MOST_GRANTED)).min(left), Vec::new())
    } else {
        let spare = spare_allowances(txn, scope, window_start, short.row).await?;
        (need, spare)
    };
    let taken_back: i64 = spare.iter().map(|(_, unused)| i64::from(*unused)).sum();
    if left + taken_back < need {
        return Ok(false);
    }
    if taken_back > 0 {
        tracing::debug!(
            scope,
            taken_back,
            "a quota's unused allowances taken back for a send near its limit"
        );
    }
    let granted = i32::try_from(granted).context("a quota grant beyond 32 bits")?;
    let taken_back = i32::try_from(taken_back).context("quota allowances beyond 32 bits")?;
    let mut moves: Vec<Addition<'_>> = spare
        .iter()
        .map(|(row, unused)| grant(row, -unused))
        .collect();
    moves.push(grant(scope, granted - taken_back));
    moves.push(grant(short.row, granted));
    moves.sort_by(|a, b| a.row.cmp(b.row));
    add_each(&**txn, &moves, Vec::new()).await?;
    Ok(true)
}

/// The scope's other counting rows of the window that hold allowance they
/// have not used, locked, with how much; rows another transaction is
/// counting in are passed over (their allowance may be what it spends).
async fn spare_allowances(
    txn: &WriteTxn,
    scope: &str,
    window_start: DateTime<Utc>,
    own: &str,
) -> CoreResult<Vec<(String, i32)>> {
    // Every `scope#N@limit` sorts between `scope#` and `scope$`.
    let read = Query::select()
        .columns(ROW_COLUMNS)
        .from(send_quota::Entity)
        .and_where(send_quota::Column::Scope.gt(format!("{scope}#")))
        .and_where(send_quota::Column::Scope.lt(format!("{scope}$")))
        .and_where(send_quota::Column::WindowStart.eq(window_start))
        .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
        .take();
    let rows = txn
        .query_all(&read)
        .await
        .context("Failed to read a quota's allowances")?;
    let mut spare = Vec::new();
    for row in rows {
        let row = StoredRow::read(&row)?;
        if row.scope != own && row.granted > row.used {
            spare.push((row.scope, row.granted - row.used));
        }
    }
    Ok(spare)
}
