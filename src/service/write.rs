//! Write transactions. On SQLite the database has one writer at a time,
//! enforced by a file lock that waiting connections poll, sleeping up to
//! 100 ms between tries: under load a writer that merely polls waits far
//! longer than its turn. Every write of this process therefore queues for
//! `Core::sqlite_writer` first, fair locks, and takes its turn the moment
//! the previous write ends. The delivery loop goes ahead of queued
//! requests (`delivery_turn`): behind 64 queued registers each of its
//! writes waited for all of them, and it fell behind the messages they
//! queued. Elsewhere the turn is a no-op.
use std::ops::Deref;

use anyhow::Context;
use sea_orm::DatabaseTransaction;
use tokio::sync::OwnedMutexGuard;

use crate::{error::CoreResult, state::Core};

/// This process's turn to write on SQLite, held until dropped; empty on
/// other databases. For a single statement outside a transaction.
#[derive(Default)]
pub struct WriterTurn {
    _request: Option<OwnedMutexGuard<()>>,
    _writer: Option<OwnedMutexGuard<()>>,
}

/// A request's turn: behind the requests queued before it.
pub async fn turn(core: &Core) -> WriterTurn {
    let Some(queue) = &core.sqlite_writer else {
        return WriterTurn::default();
    };
    let request = queue.requests.clone().lock_owned().await;
    let writer = queue.writer.clone().lock_owned().await;
    WriterTurn {
        _request: Some(request),
        _writer: Some(writer),
    }
}

/// The delivery loop's turn: behind at most one request's write.
pub async fn delivery_turn(core: &Core) -> WriterTurn {
    let Some(queue) = &core.sqlite_writer else {
        return WriterTurn::default();
    };
    WriterTurn {
        _request: None,
        _writer: Some(queue.writer.clone().lock_owned().await),
    }
}

/// A write transaction holding the writer turn until it ends.
pub struct WriteTxn {
    txn: DatabaseTransaction,
    _turn: WriterTurn,
    galera: bool,
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
    let txn = crate::db::begin(&core.db, core.galera).await?;
    Ok(WriteTxn {
        txn,
        _turn: turn,
        galera: core.galera,
    })
}

/// Commits through `db::commit`, which on a Galera node first checks that
/// the cluster has not ended the transaction.
pub async fn commit(txn: WriteTxn) -> CoreResult<()> {
    Ok(crate::db::commit(txn.txn, txn.galera).await?)
}

pub async fn rollback(txn: WriteTxn) -> CoreResult<()> {
    Ok(txn.txn.rollback().await.context("Failed to roll back")?)
}
