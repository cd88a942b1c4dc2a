//! Whether this instance can serve: what `/readyz` reports.
use std::sync::atomic::Ordering;

use chrono::Duration;

use crate::{db, state::Core};

/// Each check of readiness; ready when all hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub database: bool,
    pub migrations: bool,
    pub dispatcher: bool,
}

impl Readiness {
    pub fn is_ready(self) -> bool {
        self.database && self.migrations && self.dispatcher
    }
}

/// Cheap checks: one ping, one read of the migrations table, one atomic.
pub async fn readiness(core: &Core) -> Readiness {
    let database = core.db.ping().await.is_ok();
    let migrations = database && db::migrations_applied(&core.db).await.unwrap_or(false);
    Readiness {
        database,
        migrations,
        dispatcher: dispatcher_alive(core),
    }
}

/// The delivery loop wakes at least every poll interval; three missed
/// rounds (and never less than 30 s) mean it is stuck or gone.
fn dispatcher_alive(core: &Core) -> bool {
    let beat = core.dispatcher_beat.load(Ordering::Relaxed);
    if beat == 0 {
        return false;
    }
    let poll = i64::try_from(core.settings.delivery.poll_interval_ms).unwrap_or(i64::MAX / 4);
    let allowed = Duration::milliseconds(poll.saturating_mul(3)).max(Duration::seconds(30));
    core.clock.now().timestamp_millis() - beat <= allowed.num_milliseconds()
}
