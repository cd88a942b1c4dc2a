//! Access tokens this instance has recently found valid, so that a request
//! does not cost a database lookup of its token. An entry lives for
//! `auth.token_cache_seconds` on the service clock: a token revoked or a
//! host disabled by another instance (or the CLI) is refused here within
//! that time; through this instance, at once (the revocation and the
//! disable drop the entries). Unknown and refused tokens are never cached.
use std::{collections::HashMap, sync::Mutex};

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::domain::AuthenticatedHost;

/// Beyond this many entries the expired ones are dropped, and if that is
/// not enough, all: a flood of distinct valid tokens costs lookups, not
/// memory.
const CAPACITY: usize = 10_000;

pub struct TokenCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Clone)]
struct Entry {
    host: AuthenticatedHost,
    /// The token's own expiry.
    token_expires_at: DateTime<Utc>,
    /// When this entry stops being trusted.
    fresh_until: DateTime<Utc>,
}

impl TokenCache {
    /// `seconds = 0` turns the cache off.
    pub fn new(seconds: u32) -> Self {
        Self {
            ttl: Duration::seconds(i64::from(seconds)),
            entries: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The host of a token (by its hash) found valid less than the cache's
    /// lifetime ago and not expired since.
    pub fn get(&self, token_hash: &str, now: DateTime<Utc>) -> Option<AuthenticatedHost> {
        let entries = self.lock();
        let entry = entries.get(token_hash)?;
        (entry.fresh_until > now && entry.token_expires_at > now).then(|| entry.host.clone())
    }

    pub fn insert(
        &self,
        token_hash: String,
        host: AuthenticatedHost,
        token_expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        if self.ttl <= Duration::zero() {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= CAPACITY {
            entries.retain(|_, e| e.fresh_until > now);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(
            token_hash,
            Entry {
                host,
                token_expires_at,
                fresh_until: now + self.ttl,
            },
        );
    }

    pub fn forget_token(&self, token_hash: &str) {
        self.lock().remove(token_hash);
    }

    pub fn forget_host(&self, host_id: Uuid) {
        self.lock().retain(|_, e| e.host.id != host_id);
    }
}
