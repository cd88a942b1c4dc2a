//! SQLite's checkpoints, copied beside the one writer rather than inside
//! its turn.
//!
//! In WAL mode a commit appends the pages it changed to the log, and a
//! checkpoint copies them back into the database file; only a log copied
//! to its end can start over. SQLite checkpoints by itself in the commit
//! that takes the log past a length (`db::SQLITE_CHECKPOINT_IN_COMMIT_PAGES`),
//! and that commit holds the process's one writer turn (`service::write`)
//! until the copy and its sync are done: with the default length, every
//! other register batch at 64 connections (a batch changes about 650
//! pages), and commits were a third of the writer's time.
//!
//! Here every [`PASS_INTERVAL`] in which something was written, a passive
//! checkpoint copies the log beside the writer: it waits for no writer and
//! no writer waits for it, and on this 2-core machine it runs on the core
//! the writer leaves idle. Once the log is [`START_OVER_AT_PAGES`] long
//! and copied nearly to its end, a second pass takes the writer's turn
//! (ahead of queued requests, as the delivery loop does) to copy what is
//! left, mostly the pages committed during the first, so the next write
//! starts the log over. A pass that fails is logged and the next one
//! tries again; SQLite's own checkpoint in the commit bounds the log
//! meanwhile.
use std::time::Duration;

use tokio::sync::watch;

use crate::{db, service::write, state::Core};

/// How often the log is copied while something is being written.
pub const PASS_INTERVAL: Duration = Duration::from_millis(50);

/// The log's length, in pages, from which a pass takes the writer's turn
/// to finish the copy, so the log starts over (2,000 pages of 4 KiB, 8
/// MiB; about three register batches at 64 connections).
pub const START_OVER_AT_PAGES: i64 = 2_000;

/// The most pages a pass leaves to copy in the writer's turn, besides
/// those committed during the pass: a reader's snapshot can keep a
/// passive checkpoint from copying the log's last pages (under load it
/// rarely copies all of it: finishing only logs copied to their end gave
/// back the whole gain), and a copy of thousands of pages in the turn
/// would hold every write up as SQLite's own checkpoint did.
pub const LEFT_FOR_THE_TURN_AT_MOST: i64 = 1_000;

/// Copies SQLite's log beside its writer until `stopping`; returns at once
/// on other databases.
pub async fn until_stopped(core: Core, mut stopping: watch::Receiver<bool>) {
    let Some(queue) = core.sqlite_writer.clone() else {
        return;
    };
    let mut ticks = tokio::time::interval(PASS_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut turns_seen = None;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopping.wait_for(|stopping| *stopping) => break,
        }
        // Nothing written since the last pass: nothing to copy.
        let turns = queue.turns.load(std::sync::atomic::Ordering::Relaxed);
        if turns_seen.replace(turns) == Some(turns) {
            continue;
        }
        // SQLite's own checkpoint in a commit bounds the log meanwhile.
        if let Err(error) = copy_log(&core).await {
            tracing::warn!(error = %format!("{error:#}"), "SQLite checkpoint failed");
        }
    }
}

/// One pass: the log copied beside the writer, and, when it is long
/// enough to start over and readers held back at most
/// [`LEFT_FOR_THE_TURN_AT_MOST`] pages of it, finished in the writer's
/// turn. A log held back further waits for the next pass rather than
/// make the writer wait for a long copy.
pub async fn copy_log(core: &Core) -> anyhow::Result<()> {
    let log = db::sqlite_passive_checkpoint(&core.db).await?;
    if log.written >= START_OVER_AT_PAGES && log.written - log.copied <= LEFT_FOR_THE_TURN_AT_MOST {
        let _turn = write::checkpoint_turn(core).await;
        db::sqlite_passive_checkpoint(&core.db).await?;
    }
    Ok(())
}
