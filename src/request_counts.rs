//! Each instance's own count of the requests it admitted per host and
//! window, and the total every instance had stored when it last synced;
//! `service::request_limits` decides with it and syncs it with the
//! database.
use std::{collections::HashMap, sync::Mutex};

use chrono::{DateTime, Utc};

/// This instance's view of each host's current windows.
#[derive(Debug, Default)]
pub struct RequestLimiter {
    windows: Mutex<HashMap<String, Window>>,
    /// One sync at a time: two taking the same pending counts would store
    /// them twice.
    pub(crate) syncing: tokio::sync::Mutex<()>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    /// Every instance's requests, as the database last said.
    stored: u32,
    /// Admitted here and not yet added to the database.
    pending: u32,
}

impl RequestLimiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Window>> {
        // A panic while holding the lock cannot leave a window half
        // updated (each update is one assignment): carry on with it.
        self.windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether this instance already knows the scope's current window.
    pub(crate) fn knows(&self, scope: &str, start: DateTime<Utc>) -> bool {
        self.lock().get(scope).is_some_and(|w| w.start == start)
    }

    /// Starts the window from the database's total (unless a concurrent
    /// request already did).
    pub(crate) fn start_window(
        &self,
        scope: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        stored: u32,
    ) {
        let mut windows = self.lock();
        let current = windows.get(scope).is_some_and(|w| w.start == start);
        if !current {
            windows.insert(
                scope.to_owned(),
                Window {
                    start,
                    end,
                    stored,
                    pending: 0,
                },
            );
        }
    }

    /// Takes one request from the window's allowance; `false` when none
    /// is left.
    pub(crate) fn take(&self, scope: &str, start: DateTime<Utc>, limit: u32) -> bool {
        let mut windows = self.lock();
        let Some(window) = windows.get_mut(scope).filter(|w| w.start == start) else {
            // A later window replaced this one while the request, which
            // began in this one, was on its way: it goes uncounted.
            return true;
        };
        if window.stored.saturating_add(window.pending) >= limit {
            return false;
        }
        window.pending += 1;
        true
    }

    /// What to add to the database: each window's pending count. A window
    /// with nothing pending is not synced: an idle instance costs the
    /// database nothing, and its first request after a pause is synced
    /// (and the others' counts learnt) within the interval.
    pub(crate) fn pending(&self) -> Vec<(String, DateTime<Utc>, u32)> {
        self.lock()
            .iter()
            .filter(|(_, w)| w.pending > 0)
            .map(|(scope, w)| (scope.clone(), w.start, w.pending))
            .collect()
    }

    /// `added` of the window's pending requests are stored; the database
    /// now holds `stored` in all.
    pub(crate) fn stored(&self, scope: &str, start: DateTime<Utc>, added: u32, stored: u32) {
        if let Some(window) = self.lock().get_mut(scope).filter(|w| w.start == start) {
            window.pending = window.pending.saturating_sub(added);
            window.stored = stored;
        }
    }

    /// Forgets windows that ended and have nothing left to store.
    pub(crate) fn forget_ended(&self, now: DateTime<Utc>) {
        self.lock().retain(|_, w| w.end > now || w.pending > 0);
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    #[test]
    fn one_instance_admits_exactly_the_limit_and_learns_the_others_totals() {
        let limiter = RequestLimiter::default();
        let start = Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
        let end = start + Duration::minutes(1);
        limiter.start_window("verify:host:a", start, end, 2);
        assert!(limiter.take("verify:host:a", start, 4));
        assert!(limiter.take("verify:host:a", start, 4));
        assert!(
            !limiter.take("verify:host:a", start, 4),
            "2 stored + 2 here"
        );
        assert_eq!(limiter.pending(), vec![("verify:host:a".into(), start, 2)]);
        // The sync stored our 2; another instance had added 1 meanwhile.
        limiter.stored("verify:host:a", start, 2, 5);
        assert!(limiter.pending().is_empty());
        assert!(!limiter.take("verify:host:a", start, 5));
        assert!(limiter.take("verify:host:a", start, 6));
        // A request for a window the limiter does not hold (it began as the
        // window was replaced) is not counted against another window.
        assert!(limiter.take("verify:host:a", end, 6));
        assert_eq!(limiter.pending(), vec![("verify:host:a".into(), start, 1)]);
        limiter.start_window("verify:host:a", end, end + Duration::minutes(1), 0);
        assert!(limiter.take("verify:host:a", end, 6));
        // Starting a window twice keeps the first start's counts.
        limiter.start_window("verify:host:a", end, end + Duration::minutes(1), 0);
        assert_eq!(limiter.pending(), vec![("verify:host:a".into(), end, 1)]);
        limiter.stored("verify:host:a", end, 1, 1);
        limiter.forget_ended(end + Duration::minutes(2));
        assert!(!limiter.knows("verify:host:a", end));
    }
}
