//! Messages queued already leased to this instance's own delivery loop.
//!
//! Without it, a message a request queues is found by the loop's due list
//! and leased by its claim: one more `UPDATE` of every row, and on SQLite
//! one more turn at the writer that registers wait for. With it, while the
//! loop runs, the transaction that queues a message writes it leased under
//! a token of its own and, once committed, leaves its id here; the loop's
//! next pass reads it back by id and sends it, with no due list and no
//! claim (docs/PERFORMANCE.md, session 21). Held by `state::Core`; the
//! outbox (`service::outbox`) writes and reads what it names.
//!
//! Nothing else changes. The read back takes only messages still pending,
//! so a message cancelled meanwhile (a resend, a completed registration,
//! a newer register of the phone) is left out, as after a claim. Another
//! instance sees a leased message like any other: should this one die
//! before sending it, any instance sends it when the lease lapses. When the
//! loop stops it releases what it was handed, so others send it at once.
//!
//! Bounded at half a batch (`delivery.batch_size`): every pass still lists
//! the due messages for the rest of its batch, so messages waiting in the
//! database (an overflow, a retry with backoff) are never starved by new
//! ones, and a message waits here at most about one pass, well inside its
//! lease ([`Handover::take`] leaves one whose lease ran short to lapse).
use std::{collections::VecDeque, sync::Mutex};

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

/// One message's lease, as the transaction that queued it took it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandedOver {
    pub id: Uuid,
    pub lease_token: Uuid,
    pub lease_until: DateTime<Utc>,
}

pub struct Handover {
    state: Mutex<State>,
    capacity: usize,
    /// How long a lease taken at queueing lasts.
    lease: Duration,
    /// The least a handed-over message's lease may have left when a pass
    /// takes it: enough for its send and the recording.
    least_left: Duration,
}

#[derive(Default)]
struct State {
    /// Only while this instance's delivery loop runs.
    open: bool,
    /// Slots promised to transactions not yet committed.
    reserved: usize,
    waiting: VecDeque<HandedOver>,
}

impl Handover {
    /// `lease`: how long a lease lasts; `longest_send`: the most a send may
    /// take, so a message must have that much lease left, and a margin, to
    /// be sent from here.
    pub fn new(capacity: usize, lease: Duration, longest_send: Duration) -> Self {
        Self {
            state: Mutex::default(),
            capacity,
            lease,
            least_left: longest_send
                .checked_add(&Duration::seconds(30))
                .unwrap_or(Duration::MAX),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update below leaves the state whole before it can panic.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The delivery loop started: transactions may queue messages leased.
    pub fn open(&self) {
        self.state().open = true;
    }

    /// The delivery loop is stopping: nothing more is leased for it.
    /// Transactions that reserved before still hand over (or give back)
    /// what they reserved; then `settled`, and the loop releases `all`.
    pub fn close(&self) {
        self.state().open = false;
    }

    /// Whether no transaction holds a reservation.
    pub fn settled(&self) -> bool {
        self.state().reserved == 0
    }

    /// Everything waiting, whatever its lease has left.
    pub fn all(&self) -> Vec<HandedOver> {
        self.state().waiting.drain(..).collect()
    }

    /// Slots for up to `wanted` messages of one transaction, fewer (or
    /// none) when the handover is nearly full or the loop is not running.
    /// The messages beyond them are queued free, for any instance's due list.
    pub fn reserve(&self, wanted: usize, now: DateTime<Utc>) -> Reservation<'_> {
        let mut state = self.state();
        let free = if state.open {
            self.capacity
                .saturating_sub(state.waiting.len() + state.reserved)
        } else {
            0
        };
        let slots = wanted.min(free);
        state.reserved += slots;
        Reservation {
            handover: self,
            slots,
            // A token is random bytes from the kernel: only when used.
            lease_token: if slots > 0 {
                Uuid::new_v4()
            } else {
                Uuid::nil()
            },
            lease_until: now
                .checked_add_signed(self.lease)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            leased: Vec::with_capacity(slots),
        }
    }

    /// What a pass sends without listing or claiming it, oldest first, up
    /// to `most`. A message whose lease has too little left for a send is
    /// dropped from here: it goes out once its lease lapses, through a due
    /// list, here or on another instance.
    pub fn take(&self, most: usize, now: DateTime<Utc>) -> Vec<HandedOver> {
        let mut state = self.state();
        let count = most.min(state.waiting.len());
        let taken = state.waiting.drain(..count);
        let (fresh, short): (Vec<_>, Vec<_>) =
            taken.partition(|message| message.lease_until - now >= self.least_left);
        if !short.is_empty() {
            tracing::warn!(
                messages = short.len(),
                "handed-over messages waited too long; they go out when their lease lapses"
            );
        }
        fresh
    }

    /// Messages a pass took but could not read: first in line again.
    pub fn put_back(&self, taken: Vec<HandedOver>) {
        let mut state = self.state();
        for message in taken.into_iter().rev() {
            state.waiting.push_front(message);
        }
    }
}

/// Slots in the handover for one transaction's messages: each message
/// queued while a slot is left is written leased (`lease`). Once the
/// transaction has committed, [`Reservation::hand_over`]; dropped without
/// that (a rollback, a retry, an error), it gives the slots back.
#[must_use = "hand the leased messages over once the transaction commits"]
pub struct Reservation<'h> {
    handover: &'h Handover,
    slots: usize,
    lease_token: Uuid,
    lease_until: DateTime<Utc>,
    leased: Vec<Uuid>,
}

impl Reservation<'_> {
    /// The lease for the message `id` about to be queued, while a slot is
    /// left: `(token, until)`.
    pub fn lease(&mut self, id: Uuid) -> Option<(Uuid, DateTime<Utc>)> {
        (self.leased.len() < self.slots).then(|| {
            self.leased.push(id);
            (self.lease_token, self.lease_until)
        })
    }

    /// Call right after the commit: the messages leased go to the loop.
    pub fn hand_over(mut self) {
        let leased = std::mem::take(&mut self.leased);
        let mut state = self.handover.state();
        state
            .waiting
            .extend(leased.into_iter().map(|id| HandedOver {
                id,
                lease_token: self.lease_token,
                lease_until: self.lease_until,
            }));
        // `drop` gives the reservation back.
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut state = self.handover.state();
        state.reserved -= self.slots;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handover(capacity: usize) -> Handover {
        let handover = Handover::new(capacity, Duration::seconds(50), Duration::seconds(10));
        handover.open();
        handover
    }

    fn queue(reservation: &mut Reservation<'_>, count: usize) -> usize {
        (0..count)
            .filter(|_| reservation.lease(Uuid::new_v4()).is_some())
            .count()
    }

    #[test]
    fn a_closed_handover_leases_nothing() {
        let handover = Handover::new(4, Duration::seconds(50), Duration::seconds(10));
        let mut reservation = handover.reserve(2, Utc::now());
        assert_eq!(queue(&mut reservation, 2), 0);
        reservation.hand_over();
        assert!(handover.take(10, Utc::now()).is_empty());
    }

    #[test]
    fn reservations_share_the_capacity_and_give_back_what_they_do_not_hand_over() {
        let handover = handover(3);
        let now = Utc::now();
        let mut first = handover.reserve(2, now);
        let mut second = handover.reserve(2, now);
        assert_eq!(queue(&mut first, 2), 2);
        assert_eq!(queue(&mut second, 2), 1, "one slot was left");
        drop(second); // rolled back
        let mut third = handover.reserve(2, now);
        assert_eq!(
            queue(&mut third, 2),
            1,
            "the rolled-back slot is free again"
        );
        first.hand_over();
        third.hand_over();
        assert!(handover.settled());
        assert_eq!(handover.take(10, now).len(), 3);
        let mut after = handover.reserve(5, now);
        assert_eq!(queue(&mut after, 5), 3, "taken messages free their slots");
    }

    #[test]
    fn a_pass_takes_oldest_first_and_leaves_a_lease_run_short() {
        let handover = handover(4);
        let start = Utc::now();
        let mut early = handover.reserve(1, start);
        let early_id = Uuid::new_v4();
        assert!(early.lease(early_id).is_some());
        early.hand_over();
        let later = start + Duration::seconds(15);
        let mut late = handover.reserve(1, later);
        let late_id = Uuid::new_v4();
        assert!(late.lease(late_id).is_some());
        late.hand_over();
        // 50 s leases, 40 s needed: the first has 35 s left, the second 50.
        let taken = handover.take(10, later);
        assert_eq!(taken.iter().map(|m| m.id).collect::<Vec<_>>(), [late_id]);
        assert!(handover.take(10, later).is_empty(), "the short one is gone");
    }

    #[test]
    fn closing_refuses_more_and_keeps_what_committing_transactions_hand_over() {
        let handover = handover(4);
        let now = Utc::now();
        let mut reservation = handover.reserve(1, now);
        assert!(reservation.lease(Uuid::new_v4()).is_some());
        let mut committing = handover.reserve(1, now);
        assert!(committing.lease(Uuid::new_v4()).is_some());
        reservation.hand_over();
        handover.close();
        let mut after = handover.reserve(1, now);
        assert_eq!(queue(&mut after, 1), 0);
        drop(after);
        assert!(!handover.settled(), "one transaction is still committing");
        committing.hand_over();
        assert!(handover.settled());
        assert_eq!(handover.all().len(), 2, "both, to be released");
    }
}
