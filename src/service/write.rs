//! Write transactions. On SQLite the database has one writer at a time,
//! enforced by a file lock that waiting connections poll, sleeping up to
//! 100 ms between tries: under load a writer that merely polls waits far
//! longer than its turn. Every write of this process therefore queues for
//! `Core::sqlite_writer` first, fair locks, and takes its turn the moment
//! the previous write ends. The delivery loop goes ahead of queued
//! requests (`delivery_turn`): behind 64 queued registers each of its
//! writes waited for all of them, and it fell behind the messages they
//! queued. Elsewhere the turn is a no-op.
use std::{
    ops::Deref,
    sync::{Arc, atomic::Ordering},
    time::Instant,
};

use anyhow::Context;
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr, sea_query::InsertStatement};
use tokio::sync::OwnedMutexGuard;

use super::{KeyTakenConcurrently, is_unique_violation};
use crate::{
    counting_slots::{CountingSlots, Slot},
    error::{CoreError, CoreResult},
    metrics::{Metrics, WriterUse},
    state::Core,
};

/// This process's turn to write on SQLite, held until dropped; empty on
/// other databases. For a single statement outside a transaction, run on
/// [`WriterTurn::db`]. How long it was held goes to the metrics when it
/// ends.
pub struct WriterTurn {
    _request: Option<OwnedMutexGuard<()>>,
    _writer: Option<OwnedMutexGuard<()>>,
    held: Option<HeldBy>,
    db: DatabaseConnection,
}

impl WriterTurn {
    /// Where the turn's writes run: on SQLite the writer's own connection
    /// (`db::sqlite_writer`), which only the turn's holder can reach;
    /// elsewhere the pool.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }
}

struct HeldBy {
    by: WriterUse,
    since: Instant,
    metrics: Arc<Metrics>,
}

impl Drop for WriterTurn {
    fn drop(&mut self) {
        if let Some(held) = &self.held {
            held.metrics.writer_turn(held.by, held.since.elapsed());
        }
    }
}

/// A request's turn: behind the requests queued before it.
pub async fn turn(core: &Core) -> WriterTurn {
    take_turn(core, WriterUse::Request).await
}

/// The delivery loop's turn: behind at most one request's write.
pub async fn delivery_turn(core: &Core) -> WriterTurn {
    take_turn(core, WriterUse::Delivery).await
}

/// The checkpointer's turn (`service::checkpoints`), as the delivery
/// loop's.
pub async fn checkpoint_turn(core: &Core) -> WriterTurn {
    take_turn(core, WriterUse::Checkpoint).await
}

async fn take_turn(core: &Core, by: WriterUse) -> WriterTurn {
    let Some(queue) = &core.sqlite_writer else {
        return WriterTurn {
            _request: None,
            _writer: None,
            held: None,
            db: core.db.clone(),
        };
    };
    let request = match by {
        WriterUse::Request => Some(queue.requests.clone().lock_owned().await),
        WriterUse::Delivery | WriterUse::Checkpoint => None,
    };
    let writer = queue.writer.clone().lock_owned().await;
    queue.turns.fetch_add(1, Ordering::Relaxed);
    WriterTurn {
        _request: request,
        _writer: Some(writer),
        held: Some(HeldBy {
            by,
            since: Instant::now(),
            metrics: core.metrics.clone(),
        }),
        db: queue.connection.clone(),
    }
}

/// A write transaction holding the writer turn until it ends, and the
/// inserts held to go with its next statement that asks for them
/// ([`WriteTxn::hold`]).
pub struct WriteTxn {
    txn: DatabaseTransaction,
    _turn: WriterTurn,
    galera: bool,
    held: std::sync::Mutex<Vec<InsertStatement>>,
    /// The row of each shared quota counter this transaction counts in,
    /// taken at its first count and kept until it ends: the rows it
    /// counted in stay locked until then.
    counting_slot: std::sync::OnceLock<Slot>,
    slots: Arc<CountingSlots>,
}

impl WriteTxn {
    /// Holds an insert whose rows this transaction does not read back, to
    /// be sent with the next statement that takes the held ones
    /// ([`WriteTxn::take_held`], `db::together`), at the latest just
    /// before the commit: on PostgreSQL in that statement's round trip.
    /// A statement that does not take them runs before them: it must not
    /// need their rows.
    pub fn hold(&self, insert: InsertStatement) {
        self.held_inserts().push(insert);
    }

    /// The inserts held so far, for the caller to send (`db::together`).
    pub fn take_held(&self) -> Vec<InsertStatement> {
        std::mem::take(&mut *self.held_inserts())
    }

    /// This transaction's row of each shared quota counter
    /// (`counting_slots`), the same for all of its counts.
    pub fn counting_slot(&self) -> u32 {
        self.counting_slot.get_or_init(|| self.slots.take()).index()
    }

    /// How many rows each shared quota counter has.
    pub fn counting_slots(&self) -> u32 {
        self.slots.count()
    }

    fn held_inserts(&self) -> std::sync::MutexGuard<'_, Vec<InsertStatement>> {
        // Held and taken only between a transaction's awaits, never across
        // one: a panic cannot leave the list half written.
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Deref for WriteTxn {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

pub async fn begin(core: &Core) -> CoreResult<WriteTxn> {
    begin_in(core, turn(core).await).await
}

/// A write transaction of the delivery loop; see [`delivery_turn`].
pub async fn begin_for_delivery(core: &Core) -> CoreResult<WriteTxn> {
    begin_in(core, delivery_turn(core).await).await
}

async fn begin_in(core: &Core, turn: WriterTurn) -> CoreResult<WriteTxn> {
    let txn = crate::db::begin(turn.db(), core.galera).await?;
    Ok(WriteTxn {
        txn,
        _turn: turn,
        galera: core.galera,
        held: std::sync::Mutex::default(),
        counting_slot: std::sync::OnceLock::new(),
        slots: core.counting_slots.clone(),
    })
}

/// Sends the inserts still held, then commits through `db::commit`, which
/// on a Galera node first checks that the cluster has not ended the
/// transaction.
pub async fn commit(txn: WriteTxn) -> CoreResult<()> {
    send_held(&txn).await?;
    Ok(crate::db::commit(txn.txn, txn.galera).await?)
}

/// Sends the inserts `txn` holds, in one statement on PostgreSQL.
pub async fn send_held(txn: &WriteTxn) -> CoreResult<()> {
    crate::db::together::execute_all(&txn.txn, txn.take_held())
        .await
        .map_err(|error| new_rows_refused(error, "Failed to write the transaction's new rows"))
}

/// The error of a statement that carried held inserts, or `context`.
/// Held inserts are new rows: a unique key of theirs already there was
/// written by a concurrent transaction (another instance's pending
/// registration of the same phone), a lost race to run again whole.
pub fn new_rows_refused(error: DbErr, context: &'static str) -> CoreError {
    if is_unique_violation(&error) {
        anyhow::Error::new(KeyTakenConcurrently(error)).into()
    } else {
        anyhow::Error::new(error).context(context).into()
    }
}

pub async fn rollback(txn: WriteTxn) -> CoreResult<()> {
    Ok(txn.txn.rollback().await.context("Failed to roll back")?)
}
