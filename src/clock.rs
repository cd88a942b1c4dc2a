//! Time as a dependency, so tests can move it (token expiry, cooldowns, locks).
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Duration, Utc};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock for tests that only moves when told to.
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

/// Starts five minutes into the current hour: near real time, and far
/// enough from an hour's end that a test moving the clock by minutes stays in
/// one hourly quota window, whatever the hour it runs at.
impl Default for ManualClock {
    fn default() -> Self {
        let now = Utc::now();
        let into_hour = now.timestamp().rem_euclid(3600);
        Self {
            now: Mutex::new(now - Duration::seconds(into_hour) + Duration::minutes(5)),
        }
    }
}

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
