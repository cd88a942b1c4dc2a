//! A registration's life as a type. Every rule that decides what may happen
//! next (locked, attempts remaining, whether a channel may send now and when
//! next, whether a code is current, superseded or expired) is a method here,
//! and REST, GraphQL and the completion page all report what these say.
//!
//! The store's conditional `UPDATE`s repeat the counting rules as SQL, the
//! guard that holds under concurrency; they take their thresholds from the
//! same [`Rules`].
use chrono::{DateTime, Duration, NaiveDate, Utc};
use entity::states::{Channel, Language, RegistrationStatus};
use uuid::Uuid;

use super::PhoneNumber;
use crate::{config::RegistrationSettings, error::CoreError};

/// The thresholds of the lifecycle, from the operator's settings.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Wrong codes one registration tolerates before it locks.
    pub max_wrong_codes: u32,
    /// Sends per channel per registration, the first one included.
    pub max_sends: u32,
    pub resend_cooldown: Duration,
    /// How soon one host may register the same phone again.
    pub register_cooldown: Duration,
    pub token_expiry: Duration,
    pub link_expiry: Duration,
    /// Consecutive wrong codes for one phone before it is refused.
    pub phone_lock_threshold: u32,
    pub phone_lock: Duration,
}

impl Rules {
    pub fn new(settings: &RegistrationSettings) -> Self {
        Self {
            max_wrong_codes: settings.max_wrong_codes,
            max_sends: settings.max_sends,
            resend_cooldown: Duration::seconds(i64::from(settings.resend_cooldown_seconds)),
            register_cooldown: Duration::seconds(i64::from(settings.register_cooldown_seconds)),
            token_expiry: Duration::minutes(i64::from(settings.token_expiry_minutes)),
            link_expiry: Duration::hours(i64::from(settings.completion_link_expiry_hours)),
            phone_lock_threshold: settings.phone_lock_threshold,
            phone_lock: Duration::minutes(i64::from(settings.phone_lock_minutes)),
        }
    }
}

/// How often a channel was used and when last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sends {
    pub count: u32,
    pub last_at: Option<DateTime<Utc>>,
}

/// A registration as stored: the customer's data and its counters.
#[derive(Debug, Clone)]
pub struct Registration {
    pub id: Uuid,
    pub host_id: Uuid,
    pub phone: PhoneNumber,
    pub email: Option<String>,
    pub name: String,
    pub birth_date: NaiveDate,
    pub birth_place: String,
    pub gender: bool,
    pub country_id: String,
    pub source_id: Option<String>,
    pub account_group_id: String,
    pub status: RegistrationStatus,
    pub failed_attempts: u32,
    pub sms: Sends,
    pub email_sends: Sends,
    pub language: Language,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl Registration {
    pub fn attempts_remaining(&self, rules: &Rules) -> u32 {
        rules.max_wrong_codes.saturating_sub(self.failed_attempts)
    }

    /// Too many wrong codes: only a new registration gets a new code.
    pub fn is_locked(&self, rules: &Rules) -> bool {
        self.attempts_remaining(rules) == 0
    }

    /// Whether the customer may still confirm or ask for messages.
    pub fn ensure_open(&self, rules: &Rules) -> Result<(), CoreError> {
        match self.status {
            RegistrationStatus::Completed => Err(CoreError::RegistrationCompleted),
            RegistrationStatus::Superseded => Err(CoreError::RegistrationNotFound),
            RegistrationStatus::Pending if self.is_locked(rules) => {
                Err(CoreError::RegistrationLocked)
            }
            RegistrationStatus::Pending => Ok(()),
        }
    }

    /// Why a conditional update found this registration no longer open to
    /// it: another request changed it between our read and our write.
    pub fn lost_race(&self, rules: &Rules) -> CoreError {
        match self.status {
            RegistrationStatus::Completed => CoreError::RegistrationCompleted,
            RegistrationStatus::Pending if self.is_locked(rules) => CoreError::RegistrationLocked,
            RegistrationStatus::Pending | RegistrationStatus::Superseded => {
                CoreError::TokenSuperseded
            }
        }
    }

    pub fn sends(&self, channel: Channel) -> Sends {
        match channel {
            Channel::Sms => self.sms,
            Channel::Email => self.email_sends,
            // Webhooks go to the host: they are never sends of a registration.
            Channel::Webhook => Sends {
                count: 0,
                last_at: None,
            },
        }
    }

    /// Sends of the channel still allowed; none for email without an address.
    pub fn sends_remaining(&self, channel: Channel, rules: &Rules) -> u32 {
        if channel == Channel::Email && self.email.is_none() {
            return 0;
        }
        rules.max_sends.saturating_sub(self.sends(channel).count)
    }

    /// The earliest time the channel may send again; `None` when it may not.
    pub fn next_send_at(&self, channel: Channel, rules: &Rules) -> Option<DateTime<Utc>> {
        if self.sends_remaining(channel, rules) == 0 {
            return None;
        }
        Some(
            self.sends(channel)
                .last_at
                .map_or(self.created_at, |at| at + rules.resend_cooldown),
        )
    }

    /// Whether the channel may send now. `code_expires_at` bounds the wait
    /// once the cap is reached: after that a new registration is the way on.
    pub fn ensure_may_send(
        &self,
        channel: Channel,
        now: DateTime<Utc>,
        code_expires_at: DateTime<Utc>,
        rules: &Rules,
    ) -> Result<(), CoreError> {
        if channel == Channel::Email && self.email.is_none() {
            return Err(CoreError::NoEmailOnRegistration);
        }
        match self.next_send_at(channel, rules) {
            None => Err(CoreError::ResendLimitReached {
                retry_after_seconds: seconds_until(now, code_expires_at),
            }),
            Some(next) if next > now => Err(CoreError::ResendTooSoon {
                retry_after_seconds: seconds_until(now, next),
            }),
            Some(_) => Ok(()),
        }
    }

    /// Whether `code` can still complete this registration.
    pub fn code_is_usable(&self, code: &IssuedCode, now: DateTime<Utc>, rules: &Rules) -> bool {
        self.status == RegistrationStatus::Pending && !self.is_locked(rules) && code.is_live(now)
    }
}

/// An SMS code as stored: its public prefix and keyed hash, never the digits.
#[derive(Debug, Clone)]
pub struct IssuedCode {
    pub id: Uuid,
    pub registration_id: Uuid,
    /// 1 for the SMS sent at registration, then one more per resend.
    pub attempt: u32,
    pub prefix: String,
    pub code_hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub superseded_at: Option<DateTime<Utc>>,
}

/// What a submitted code is, judged against the registration's latest one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    /// The latest code, in time: the registration may complete.
    Current,
    /// A code of an earlier SMS: the customer typed an old message, not a
    /// guess, so no attempt is spent.
    Superseded,
    Expired,
    /// A guess: it costs an attempt.
    Wrong,
}

impl IssuedCode {
    pub fn matches(&self, submitted_hashes: &[String]) -> bool {
        submitted_hashes.contains(&self.code_hash)
    }

    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at <= now
    }

    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.superseded_at.is_none() && !self.is_expired(now)
    }

    /// `submitted_hashes` are the submitted code's keyed hashes under every
    /// accepted key (one, or more during a key rotation). `is_earlier_code`
    /// says whether they matched an earlier SMS of the same host and phone;
    /// asked only when the current code does not match.
    pub fn check(
        &self,
        submitted_hashes: &[String],
        now: DateTime<Utc>,
        is_earlier_code: impl FnOnce() -> bool,
    ) -> CodeCheck {
        if self.matches(submitted_hashes) {
            if self.is_expired(now) {
                CodeCheck::Expired
            } else {
                CodeCheck::Current
            }
        } else if is_earlier_code() {
            CodeCheck::Superseded
        } else if self.is_expired(now) {
            CodeCheck::Expired
        } else {
            CodeCheck::Wrong
        }
    }
}

/// A phone refused after too many consecutive wrong codes, until `until`.
pub fn ensure_phone_not_locked(
    locked_until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<(), CoreError> {
    match locked_until {
        Some(until) if until > now => Err(CoreError::PhoneLocked {
            retry_after_seconds: seconds_until(now, until),
        }),
        _ => Ok(()),
    }
}

/// A host registering the same phone again within the cooldown would only
/// flood the customer with codes.
pub fn ensure_register_cooled_down(
    last_registered_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    rules: &Rules,
) -> Result<(), CoreError> {
    match last_registered_at.map(|at| at + rules.register_cooldown) {
        Some(allowed_at) if allowed_at > now => Err(CoreError::RegisterTooSoon {
            retry_after_seconds: seconds_until(now, allowed_at),
        }),
        _ => Ok(()),
    }
}

/// Whole seconds from `now` to `at`, at least 1: what `Retry-After` says.
pub fn seconds_until(now: DateTime<Utc>, at: DateTime<Utc>) -> u64 {
    let millis = u64::try_from((at - now).num_milliseconds()).unwrap_or(0);
    std::cmp::max(millis.div_ceil(1000), 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules::new(&RegistrationSettings::default())
    }

    fn pending(now: DateTime<Utc>) -> Registration {
        Registration {
            id: Uuid::now_v7(),
            host_id: Uuid::now_v7(),
            phone: PhoneNumber::from_stored("+6281234567890".into()),
            email: None,
            name: "Septian".into(),
            birth_date: NaiveDate::default(),
            birth_place: "Jakarta".into(),
            gender: true,
            country_id: "ID".into(),
            source_id: None,
            account_group_id: "01".into(),
            status: RegistrationStatus::Pending,
            failed_attempts: 0,
            sms: Sends {
                count: 1,
                last_at: Some(now),
            },
            email_sends: Sends {
                count: 0,
                last_at: None,
            },
            language: Language::Id,
            created_at: now,
            completed_at: None,
        }
    }

    #[test]
    fn locks_after_the_allowed_wrong_codes() {
        let rules = rules();
        let mut registration = pending(Utc::now());
        registration.failed_attempts = rules.max_wrong_codes - 1;
        assert_eq!(registration.attempts_remaining(&rules), 1);
        assert!(registration.ensure_open(&rules).is_ok());
        registration.failed_attempts = rules.max_wrong_codes;
        assert!(matches!(
            registration.ensure_open(&rules),
            Err(CoreError::RegistrationLocked)
        ));
    }

    #[test]
    fn resends_wait_for_the_cooldown_then_stop_at_the_cap() {
        let rules = rules();
        let now = Utc::now();
        let expires = now + rules.token_expiry;
        let mut registration = pending(now);
        assert!(matches!(
            registration.ensure_may_send(Channel::Sms, now, expires, &rules),
            Err(CoreError::ResendTooSoon { .. })
        ));
        let later = now + rules.resend_cooldown;
        assert!(
            registration
                .ensure_may_send(Channel::Sms, later, expires, &rules)
                .is_ok()
        );
        registration.sms.count = rules.max_sends;
        assert_eq!(registration.next_send_at(Channel::Sms, &rules), None);
        assert!(matches!(
            registration.ensure_may_send(Channel::Sms, later, expires, &rules),
            Err(CoreError::ResendLimitReached { .. })
        ));
        assert!(matches!(
            registration.ensure_may_send(Channel::Email, later, expires, &rules),
            Err(CoreError::NoEmailOnRegistration)
        ));
    }

    #[test]
    fn codes_are_current_superseded_expired_or_wrong() {
        let now = Utc::now();
        let code = IssuedCode {
            id: Uuid::now_v7(),
            registration_id: Uuid::now_v7(),
            attempt: 1,
            prefix: "ABC".into(),
            code_hash: "right".into(),
            created_at: now,
            expires_at: now + Duration::minutes(5),
            superseded_at: None,
        };
        let later = now + Duration::minutes(6);
        let hashes = |h: &str| vec![h.to_owned(), "under-an-older-key".to_owned()];
        assert_eq!(
            code.check(&hashes("right"), now, || false),
            CodeCheck::Current
        );
        assert_eq!(
            code.check(&hashes("right"), later, || false),
            CodeCheck::Expired
        );
        assert_eq!(
            code.check(&hashes("old"), now, || true),
            CodeCheck::Superseded
        );
        assert_eq!(
            code.check(&hashes("guess"), now, || false),
            CodeCheck::Wrong
        );
        assert_eq!(
            code.check(&hashes("guess"), later, || false),
            CodeCheck::Expired
        );
    }
}
