//! Work waiting to be written together (group commit): each request leaves
//! its item here, and whoever holds a writer's permit takes the waiting
//! items and writes them in one transaction (`service::registration::batch`
//! for registers). Items are type-erased because the core's types sit above
//! this module (`state::Core` holds the queue).
//!
//! Each item has a key (for registers: the host and the phone). Two items
//! of one key are never written at once, in one batch or in two: the later
//! waits until the earlier's batch is over, so it is written after it, in
//! the order they arrived.
use std::{
    any::Any,
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::{AcquireError, Notify, OwnedSemaphorePermit, Semaphore};

type Item = Box<dyn Any + Send>;

pub struct GroupCommit {
    queue: Mutex<Queue>,
    next_id: AtomicU64,
    /// One permit per batch that may be written at once.
    writers: Arc<Semaphore>,
    writer_count: u32,
    /// Signalled whenever a batch is over: items of its keys may go now.
    finished: Notify,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiting>,
    /// Keys of the batches being written, with how many items of each.
    in_flight: HashMap<u64, usize>,
}

struct Waiting {
    id: u64,
    key: u64,
    item: Item,
}

/// Items taken to be written together. Their keys stay busy until the
/// batch is dropped, whatever ends its writing (a panic included).
pub struct Batch {
    items: Vec<Item>,
    keys: Vec<u64>,
    queue: Arc<GroupCommit>,
}

impl GroupCommit {
    /// A queue whose batches are written `writers` at a time.
    pub fn new(writers: u32) -> Self {
        let writers = writers.max(1);
        Self {
            queue: Mutex::default(),
            next_id: AtomicU64::new(0),
            writers: Arc::new(Semaphore::new(writers as usize)),
            writer_count: writers,
            finished: Notify::new(),
        }
    }

    /// Leaves an item to be written; the id takes it back ([`Self::withdraw`]).
    pub fn leave(&self, key: u64, item: Item) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().waiting.push(Waiting { id, key, item });
        id
    }

    /// A writer's turn: held while its batch is written. (The semaphore
    /// is never closed: the error cannot happen.)
    pub async fn writer(&self) -> Result<OwnedSemaphorePermit, AcquireError> {
        self.writers.clone().acquire_owned().await
    }

    /// Every writer's turn: nothing is written while it is held (tests use
    /// it to let registers queue).
    pub async fn pause(&self) -> Result<OwnedSemaphorePermit, AcquireError> {
        self.writers
            .clone()
            .acquire_many_owned(self.writer_count)
            .await
    }

    /// Resolves once a batch is over. Enable it (`Notified::enable`) before
    /// [`Self::take`] so a batch that ends in between is not missed.
    pub fn finished(&self) -> tokio::sync::futures::Notified<'_> {
        self.finished.notified()
    }

    /// The oldest waiting items whose keys are not being written and not
    /// repeated: as many as the largest power of two that is at most `most`
    /// and at most the number of such items. Each batch size is a
    /// different SQL text of each multi-row statement, and every pooled
    /// connection keeps the statements it prepared: a few sizes keep that
    /// cache small.
    pub fn take(self: &Arc<Self>, most: usize) -> Batch {
        let mut queue = self.lock();
        let mut keys = HashSet::new();
        let eligible: Vec<usize> = queue
            .waiting
            .iter()
            .enumerate()
            .filter(|(_, w)| !queue.in_flight.contains_key(&w.key) && keys.insert(w.key))
            .map(|(index, _)| index)
            .take(most)
            .collect();
        let count = match eligible.len() {
            0 => 0,
            n => 1 << n.ilog2(),
        };
        let chosen: HashSet<usize> = eligible.into_iter().take(count).collect();
        let mut batch = Batch {
            items: Vec::with_capacity(count),
            keys: Vec::with_capacity(count),
            queue: self.clone(),
        };
        for (index, waiting) in std::mem::take(&mut queue.waiting).into_iter().enumerate() {
            if chosen.contains(&index) {
                batch.items.push(waiting.item);
                batch.keys.push(waiting.key);
            } else {
                queue.waiting.push(waiting);
            }
        }
        for key in &batch.keys {
            *queue.in_flight.entry(*key).or_default() += 1;
        }
        batch
    }

    /// A batch is over: its keys are free again.
    fn finish(&self, keys: &[u64]) {
        if keys.is_empty() {
            return;
        }
        let mut queue = self.lock();
        for key in keys {
            if let Some(count) = queue.in_flight.get_mut(key) {
                *count -= 1;
                if *count == 0 {
                    queue.in_flight.remove(key);
                }
            }
        }
        drop(queue);
        self.finished.notify_waiters();
    }

    /// How many items are waiting.
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Takes back an item nobody took yet (its request or client went
    /// away); false when it was no longer waiting (taken).
    pub fn withdraw(&self, id: u64) -> bool {
        let mut queue = self.lock();
        let before = queue.waiting.len();
        queue.waiting.retain(|waiting| waiting.id != id);
        queue.waiting.len() != before
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // The queue stays consistent whatever panicked while holding it.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The items, to write; the batch itself is kept until they are
    /// written, since dropping it frees their keys.
    pub fn take_items(&mut self) -> Vec<Item> {
        std::mem::take(&mut self.items)
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        self.queue.finish(&self.keys);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(mut batch: Batch) -> Vec<u32> {
        batch
            .take_items()
            .into_iter()
            .map(|item| *item.downcast::<u32>().unwrap())
            .collect()
    }

    #[test]
    fn takes_a_power_of_two_of_the_oldest() {
        let queue = Arc::new(GroupCommit::new(2));
        for n in 0..7u32 {
            queue.leave(u64::from(n), Box::new(n));
        }
        assert_eq!(taken(queue.take(32)), vec![0, 1, 2, 3]);
        assert_eq!(taken(queue.take(32)), vec![4, 5]);
        assert_eq!(taken(queue.take(1)), vec![6]);
        assert_eq!(queue.waiting(), 0);
    }

    #[test]
    fn a_key_is_never_in_two_batches_at_once() {
        let queue = Arc::new(GroupCommit::new(2));
        queue.leave(1, Box::new(10u32));
        queue.leave(2, Box::new(20u32));
        queue.leave(1, Box::new(11u32));
        queue.leave(3, Box::new(30u32));
        // The repeated key 1 is left for later, in its place.
        let first = queue.take(32);
        assert_eq!(first.keys, vec![1, 2]);
        // Key 1 is being written: only 30 may go now.
        let second = queue.take(32);
        assert_eq!(second.keys, vec![3]);
        assert!(queue.take(32).is_empty());
        assert_eq!(queue.waiting(), 1);
        drop(first);
        assert_eq!(taken(queue.take(32)), vec![11]);
        drop(second);
        assert!(queue.lock().in_flight.is_empty());
    }
}
