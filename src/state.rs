//! What every operation needs, built once at start-up.
use crate::token_cache::TokenCache;
use std::sync::{Arc, atomic::AtomicI64};

use sea_orm::DatabaseConnection;
use tokio::sync::Notify;

use crate::{
    clock::Clock,
    config::Settings,
    crypto::{Keys, PasswordHashing},
    domain::Rules,
    metrics::Metrics,
    templates::Templates,
};

#[derive(Clone)]
pub struct Core {
    pub db: DatabaseConnection,
    pub settings: Arc<Settings>,
    /// The registration lifecycle's thresholds, from `settings`.
    pub rules: Rules,
    pub clock: Arc<dyn Clock>,
    pub keys: Arc<Keys>,
    pub hashing: PasswordHashing,
    /// Wakes the delivery dispatcher when a transaction queued messages.
    pub outbox_signal: Arc<Notify>,
    pub templates: Arc<Templates>,
    pub metrics: Arc<Metrics>,
    /// When the delivery loop last went round (Unix milliseconds; 0: never).
    pub dispatcher_beat: Arc<AtomicI64>,
    /// Access tokens recently found valid.
    pub tokens: Arc<TokenCache>,
}

impl Core {
    pub fn new(
        db: DatabaseConnection,
        settings: Arc<Settings>,
        clock: Arc<dyn Clock>,
        keys: Arc<Keys>,
        metrics: Arc<Metrics>,
        templates: Arc<Templates>,
    ) -> Self {
        let hashing = PasswordHashing::new(
            keys.clone(),
            settings.limits.max_concurrent_hashes,
            settings.limits.max_queued_hashes,
        );
        let settings_cache_seconds = settings.auth.token_cache_seconds;
        Self {
            db,
            rules: Rules::new(&settings.registration),
            settings,
            clock,
            keys,
            hashing,
            outbox_signal: Arc::new(Notify::new()),
            templates,
            metrics,
            dispatcher_beat: Arc::new(AtomicI64::new(0)),
            tokens: Arc::new(TokenCache::new(settings_cache_seconds)),
        }
    }
}
