//! The configured SMS providers as this instance sends through them: each
//! one's transport and its circuit breaker. Which provider a message goes
//! to and where it moves after a failure is decided in configuration
//! (`SmsSettings::route`, `failover`); the breaker only lets this instance
//! skip, for a while, a provider that keeps failing.
use std::{
    path::PathBuf,
    sync::Mutex,
    time::{Duration, Instant},
};

use super::{MemoryOutbox, OutgoingMessage, SendError, SmsTransport};
use crate::config::SmsSettings;

pub struct SmsProviders {
    providers: Vec<Provider>,
}

struct Provider {
    name: String,
    transport: SmsTransport,
    breaker: Breaker,
}

impl SmsProviders {
    pub fn from_settings(
        sms: &SmsSettings,
        public_base_url: &str,
        outbox_dir: PathBuf,
        memory: &MemoryOutbox,
    ) -> anyhow::Result<Self> {
        let breaker = BreakerPolicy {
            failures: sms.breaker_failures,
            cooldown: Duration::from_secs(sms.breaker_cooldown_seconds),
        };
        let providers = sms
            .providers()
            .iter()
            .map(|settings| {
                let callback = settings
                    .takes_receipts()
                    .then(|| format!("{public_base_url}/delivery/receipts/{}", settings.name));
                Ok(Provider {
                    name: settings.name.clone(),
                    transport: SmsTransport::from_settings(
                        settings,
                        sms.timeout_seconds,
                        outbox_dir.clone(),
                        memory,
                        callback,
                    )?,
                    breaker: Breaker::new(breaker),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { providers })
    }

    /// Of the providers on a message's `route` (from `start`, the one it is
    /// assigned to), the first whose breaker lets a send through; the
    /// assigned one when every breaker is open, since waiting helps nobody.
    pub fn choose<'r>(&self, route: &'r [String], start: usize) -> &'r str {
        route[start..]
            .iter()
            .find(|name| self.get(name).is_some_and(|p| p.breaker.allows()))
            .unwrap_or(&route[start])
    }

    /// Sends through the named provider and feeds its breaker.
    pub async fn send(
        &self,
        name: &str,
        message: &OutgoingMessage<'_>,
    ) -> Result<String, SendError> {
        let Some(provider) = self.get(name) else {
            return Err(SendError::Permanent(format!(
                "no SMS provider named {name:?} is configured"
            )));
        };
        let result = provider.transport.send(message).await;
        match &result {
            Ok(_) => provider.breaker.succeeded(),
            // A permanent failure is about the message (a number the
            // provider refuses), not about the provider's health.
            Err(SendError::Transient(_)) => provider.breaker.failed(),
            Err(SendError::Permanent(_)) => {}
        }
        result
    }

    fn get(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.name == name)
    }
}

#[derive(Debug, Clone, Copy)]
struct BreakerPolicy {
    failures: u32,
    cooldown: Duration,
}

/// Closed: sends go through. After `failures` transient failures in a row
/// it opens for `cooldown`; then it lets sends through again, and one more
/// failure opens it at once (half-open), one success closes it.
struct Breaker {
    policy: BreakerPolicy,
    state: Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    consecutive_failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    fn new(policy: BreakerPolicy) -> Self {
        Self {
            policy,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn allows(&self) -> bool {
        self.lock()
            .open_until
            .is_none_or(|until| Instant::now() >= until)
    }

    fn succeeded(&self) {
        *self.lock() = BreakerState::default();
    }

    fn failed(&self) {
        let mut state = self.lock();
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        if state.consecutive_failures >= self.policy.failures {
            state.open_until = Some(Instant::now() + self.policy.cooldown);
            // Half-open after the cooldown: the next failure reopens it.
            state.consecutive_failures = self.policy.failures.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_failures_recovers_after_cooldown_and_reopens_half_open() {
        let breaker = Breaker::new(BreakerPolicy {
            failures: 3,
            cooldown: Duration::from_millis(50),
        });
        breaker.failed();
        breaker.failed();
        assert!(breaker.allows(), "two failures of three keep it closed");
        breaker.failed();
        assert!(!breaker.allows(), "the third opens it");
        std::thread::sleep(Duration::from_millis(60));
        assert!(breaker.allows(), "half-open after the cooldown");
        breaker.failed();
        assert!(!breaker.allows(), "one failure while half-open reopens it");
        std::thread::sleep(Duration::from_millis(60));
        breaker.succeeded();
        breaker.failed();
        assert!(
            breaker.allows(),
            "a success closed it: counting starts over"
        );
    }
}
