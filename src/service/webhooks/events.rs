//! The events a host hears of, and their payloads.
use chrono::{DateTime, Utc};
use entity::states::{Channel, ErrorClass};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::domain::{BudgetMonth, MonthlySmsBudget, WARNING_PERCENT};

/// What happened, as the payload's `type` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// A registration was created (or replaced an earlier one) and its
    /// messages are queued.
    RegistrationStarted,
    /// The customer confirmed; the customer exists.
    RegistrationCompleted,
    /// Wrong codes locked the registration, or the phone at this host.
    RegistrationLocked,
    /// The customer's phone or mailbox got a message (from a receipt).
    MessageDelivered,
    /// A message to the customer was given up on (dead-lettered).
    MessageFailed,
    /// The host's SMS this month reached 80 % of its monthly budget.
    HostBudgetWarning,
}

impl EventType {
    pub fn name(self) -> &'static str {
        match self {
            EventType::RegistrationStarted => "registration.started",
            EventType::RegistrationCompleted => "registration.completed",
            EventType::RegistrationLocked => "registration.locked",
            EventType::MessageDelivered => "message.delivered",
            EventType::MessageFailed => "message.failed",
            EventType::HostBudgetWarning => "host.budget_warning",
        }
    }
}

/// Why wrong codes locked a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockReason {
    /// The registration used up its wrong codes (`max_wrong_codes`).
    AttemptsExhausted,
    /// The phone is refused to this host for a while (`phone_lock_*`).
    PhoneLocked,
}

/// One event for a host. Payloads name the registration, the customer's
/// phone (the username) and the status; never a code, password or link.
#[derive(Debug, Clone)]
pub struct WebhookEvent {
    pub kind: EventType,
    pub registration_id: Uuid,
    pub at: DateTime<Utc>,
    data: Value,
}

impl WebhookEvent {
    pub fn registration_started(registration_id: Uuid, phone: &str, at: DateTime<Utc>) -> Self {
        Self::registration(EventType::RegistrationStarted, registration_id, phone, at)
            .with("status", json!("pending"))
    }

    pub fn registration_completed(
        registration_id: Uuid,
        phone: &str,
        customer_id: Uuid,
        at: DateTime<Utc>,
    ) -> Self {
        Self::registration(EventType::RegistrationCompleted, registration_id, phone, at)
            .with("status", json!("completed"))
            .with("customerId", json!(customer_id))
    }

    pub fn registration_locked(
        registration_id: Uuid,
        phone: &str,
        reason: LockReason,
        at: DateTime<Utc>,
    ) -> Self {
        let reason = match reason {
            LockReason::AttemptsExhausted => "attempts_exhausted",
            LockReason::PhoneLocked => "phone_locked",
        };
        Self::registration(EventType::RegistrationLocked, registration_id, phone, at)
            .with("status", json!("locked"))
            .with("reason", json!(reason))
    }

    /// For the delivery receipts: the customer received the message.
    pub fn message_delivered(
        registration_id: Uuid,
        phone: &str,
        message_id: Uuid,
        channel: Channel,
        at: DateTime<Utc>,
    ) -> Self {
        Self::registration(EventType::MessageDelivered, registration_id, phone, at)
            .with("messageId", json!(message_id))
            .with("channel", json!(channel.name()))
            .with("status", json!("delivered"))
    }

    /// A message to the customer was dead-lettered. `error` is the stored,
    /// credential-free transport error.
    pub fn message_failed(
        registration_id: Uuid,
        phone: &str,
        message_id: Uuid,
        channel: Channel,
        class: ErrorClass,
        error: &str,
        at: DateTime<Utc>,
    ) -> Self {
        Self::registration(EventType::MessageFailed, registration_id, phone, at)
            .with("messageId", json!(message_id))
            .with("channel", json!(channel.name()))
            .with("status", json!("failed"))
            .with("errorClass", json!(class.name()))
            .with("error", json!(error))
    }

    /// Carried by the outbox with the registration whose SMS crossed the
    /// warning share; the payload is about the host's month only.
    pub fn budget_warning(
        registration_id: Uuid,
        month: BudgetMonth,
        budget: MonthlySmsBudget,
        sms_queued: u32,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            kind: EventType::HostBudgetWarning,
            registration_id,
            at,
            data: json!({
                "month": month.label(),
                "monthlySmsBudget": budget.sms(),
                "smsQueued": sms_queued,
                "warningPercent": WARNING_PERCENT,
                "renewsAt": month.ends_at().to_rfc3339(),
            }),
        }
    }

    fn registration(
        kind: EventType,
        registration_id: Uuid,
        phone: &str,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            kind,
            registration_id,
            at,
            data: json!({"registrationId": registration_id, "username": phone}),
        }
    }

    fn with(mut self, key: &str, value: Value) -> Self {
        if let Value::Object(map) = &mut self.data {
            map.insert(key.to_owned(), value);
        }
        self
    }

    /// The JSON body sent: `{"type", "timestamp", "data"}`.
    pub fn payload(&self) -> String {
        json!({
            "type": self.kind.name(),
            "timestamp": self.at.to_rfc3339(),
            "data": self.data,
        })
        .to_string()
    }
}
