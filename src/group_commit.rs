//! Work waiting to be written together (group commit): each request leaves
//! its item here, and whoever holds `gate` takes every waiting item and
//! writes them in one transaction (`service::registration::batch` for
//! registers). Items are type-erased because the core's types sit above
//! this module (`state::Core` holds the queue).
use std::{
    any::Any,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

type Item = Box<dyn Any + Send>;

#[derive(Default)]
pub struct GroupCommit {
    waiting: Mutex<Vec<(u64, Item)>>,
    next_id: AtomicU64,
    /// Held while a batch is written: one batch at a time per process.
    pub gate: Arc<tokio::sync::Mutex<()>>,
}

impl GroupCommit {
    /// Leaves an item to be written; the id takes it back ([`Self::withdraw`]).
    pub fn leave(&self, item: Item) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().push((id, item));
        id
    }

    /// The oldest waiting items: as many as the largest power of two that
    /// is at most `most` and at most the number waiting. Each batch size
    /// is a different SQL text of each multi-row statement, and every
    /// pooled connection keeps the statements it prepared: a few sizes keep
    /// that cache small.
    pub fn take(&self, most: usize) -> Vec<Item> {
        let mut waiting = self.lock();
        let available = waiting.len().min(most);
        let count = if available == 0 {
            0
        } else {
            1 << available.ilog2()
        };
        waiting.drain(..count).map(|(_, item)| item).collect()
    }

    /// How many items are waiting.
    pub fn waiting(&self) -> usize {
        self.lock().len()
    }

    /// Takes back an item nobody took yet (its request went away).
    pub fn withdraw(&self, id: u64) {
        self.lock().retain(|(waiting, _)| *waiting != id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Item)>> {
        // The list stays consistent whatever panicked while holding it.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
