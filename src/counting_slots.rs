//! Which of a shared quota counter's rows a transaction counts in
//! (`service::quotas::allowances`). Each transaction that counts takes a
//! slot and keeps it until it ends, because the row it counted in stays
//! locked until then: two transactions of this instance never wait for
//! each other at a shared counter unless more of them count at once than
//! there are slots. The lowest free slot is taken, so a quiet instance
//! counts in one row; each instance starts at a random slot, so two
//! instances' writers mostly count in different rows.
use std::sync::{
    Arc, Mutex, PoisonError,
    atomic::{AtomicU32, Ordering},
};

pub struct CountingSlots {
    slots: u32,
    /// This instance's first slot.
    base: u32,
    /// One bit for each slot in use, counted from `base`.
    busy: Mutex<u64>,
    /// When every slot is in use, the next to share.
    overflow: AtomicU32,
}

/// A slot, given back when dropped.
pub struct Slot {
    index: u32,
    /// The bit to clear; `None` for a slot shared because all were in use.
    held: Option<(Arc<CountingSlots>, u32)>,
}

impl CountingSlots {
    /// `slots` rows per shared counter (1 to 64).
    pub fn new(slots: u32) -> Self {
        let slots = slots.clamp(1, 64);
        Self {
            slots,
            base: rand::Rng::gen_range(&mut rand::thread_rng(), 0..slots),
            busy: Mutex::new(0),
            overflow: AtomicU32::new(0),
        }
    }

    pub fn count(&self) -> u32 {
        self.slots
    }

    pub fn take(self: &Arc<Self>) -> Slot {
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        let free = (!*busy).trailing_zeros();
        if free < self.slots {
            *busy |= 1 << free;
            return Slot {
                index: (self.base + free) % self.slots,
                held: Some((self.clone(), free)),
            };
        }
        let shared = self.overflow.fetch_add(1, Ordering::Relaxed) % self.slots;
        Slot {
            index: (self.base + shared) % self.slots,
            held: None,
        }
    }
}

impl Slot {
    pub fn index(&self) -> u32 {
        self.index
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((slots, bit)) = &self.held {
            let mut busy = slots.busy.lock().unwrap_or_else(PoisonError::into_inner);
            *busy &= !(1 << bit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_lowest_free_slot_and_shares_only_when_all_are_taken() {
        let slots = Arc::new(CountingSlots::new(3));
        let base = slots.base;
        let first = slots.take();
        let second = slots.take();
        assert_eq!(first.index(), base);
        assert_eq!(second.index(), (base + 1) % 3);
        drop(first);
        // The freed slot is the next one taken.
        let again = slots.take();
        assert_eq!(again.index(), base);
        let third = slots.take();
        assert_eq!(third.index(), (base + 2) % 3);
        // All in use: shared in turn, and nothing is freed by their drop.
        let shared = [slots.take(), slots.take(), slots.take(), slots.take()];
        let mut indices: Vec<u32> = shared.iter().map(Slot::index).collect();
        indices.sort_unstable();
        let mut expected = vec![0, 1, 2, base];
        expected.sort_unstable();
        assert_eq!(indices, expected);
        drop(shared);
        assert_eq!(*slots.busy.lock().unwrap(), 0b111);
    }

    #[test]
    fn one_slot_is_always_the_same_row() {
        let slots = Arc::new(CountingSlots::new(1));
        let a = slots.take();
        let b = slots.take();
        assert_eq!((a.index(), b.index()), (0, 0));
    }
}
