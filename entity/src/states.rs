//! Every stored state as an enum. The strings are what the database holds;
//! a row with any other value fails to load instead of being guessed at.
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Where a registration is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum RegistrationStatus {
    /// Waiting for the customer's code.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// The customer exists.
    #[sea_orm(string_value = "completed")]
    Completed,
    /// Replaced by a newer registration of the same host for the phone.
    #[sea_orm(string_value = "superseded")]
    Superseded,
}

/// What an outbox message travels by: the two ways a registration reaches
/// the customer, and a signed webhook to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(8))")]
pub enum Channel {
    #[sea_orm(string_value = "sms")]
    Sms,
    #[sea_orm(string_value = "email")]
    Email,
    /// An event to the host's endpoint; never counted against send quotas.
    #[sea_orm(string_value = "webhook")]
    Webhook,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Sms, Channel::Email, Channel::Webhook];
    /// The channels that reach the customer (and carry codes or links).
    pub const TO_CUSTOMER: [Channel; 2] = [Channel::Sms, Channel::Email];

    /// The stored name, also used in logs, metrics and quota scopes.
    pub fn name(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }
}

/// Where an outbox message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum OutboxStatus {
    /// Queued, or waiting for its next try.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// Accepted by the SMTP server or the SMS gateway.
    #[sea_orm(string_value = "sent")]
    Sent,
    /// Given up on; its body is erased.
    #[sea_orm(string_value = "dead")]
    Dead,
    /// Not to be sent any more: its code or link was replaced or used, its
    /// registration completed, or its host disabled. Its body is erased.
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
    /// The SMS provider's receipt says it reached the phone. Final.
    #[sea_orm(string_value = "delivered")]
    Delivered,
    /// The provider's receipt says the network could not deliver it, and
    /// no other provider was left to try. Final; its body is erased.
    #[sea_orm(string_value = "undelivered")]
    Undelivered,
    /// The provider's receipt says it failed before reaching the network,
    /// and no other provider was left to try. Final; its body is erased.
    #[sea_orm(string_value = "failed")]
    Failed,
}

impl OutboxStatus {
    pub fn name(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Sent => "sent",
            OutboxStatus::Dead => "dead",
            OutboxStatus::Cancelled => "cancelled",
            OutboxStatus::Delivered => "delivered",
            OutboxStatus::Undelivered => "undelivered",
            OutboxStatus::Failed => "failed",
        }
    }

    /// Whether the message's row holds a send that went through (its
    /// `sent_at`, `provider` and `provider_message_id`): sent, and since at
    /// most a final receipt. Once a receipt moves it to another provider it
    /// is pending again, and that send is a `delivery_attempt` row.
    pub fn holds_its_send(self) -> bool {
        match self {
            OutboxStatus::Sent
            | OutboxStatus::Delivered
            | OutboxStatus::Undelivered
            | OutboxStatus::Failed => true,
            OutboxStatus::Pending | OutboxStatus::Dead | OutboxStatus::Cancelled => false,
        }
    }
}

/// What one event of a message's delivery timeline was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum AttemptOutcome {
    #[sea_orm(string_value = "sent")]
    Sent,
    /// Failed; another try is scheduled.
    #[sea_orm(string_value = "failed")]
    Failed,
    /// Failed for good; the message is dead.
    #[sea_orm(string_value = "dead")]
    Dead,
    /// An operator put the dead message back in the queue.
    #[sea_orm(string_value = "requeued")]
    Requeued,
    /// Withdrawn before it was sent; the attempt's error says why.
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
    /// The provider's receipt: it reached the phone.
    #[sea_orm(string_value = "delivered")]
    Delivered,
    /// The provider's receipt: the network could not deliver it.
    #[sea_orm(string_value = "undelivered")]
    Undelivered,
    /// The provider's receipt: it failed before reaching the network.
    #[sea_orm(string_value = "provider_failed")]
    ProviderFailed,
}

impl AttemptOutcome {
    pub fn name(self) -> &'static str {
        match self {
            AttemptOutcome::Sent => "sent",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Dead => "dead",
            AttemptOutcome::Requeued => "requeued",
            AttemptOutcome::Cancelled => "cancelled",
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::Undelivered => "undelivered",
            AttemptOutcome::ProviderFailed => "provider_failed",
        }
    }

    /// A provider's receipt, which comes after the send it is about.
    pub fn is_receipt(self) -> bool {
        matches!(
            self,
            AttemptOutcome::Delivered
                | AttemptOutcome::Undelivered
                | AttemptOutcome::ProviderFailed
        )
    }
}

/// Whether a failed send may succeed if tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum ErrorClass {
    #[sea_orm(string_value = "transient")]
    Transient,
    #[sea_orm(string_value = "permanent")]
    Permanent,
}

impl ErrorClass {
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
        }
    }
}

/// The language of a customer's messages and pages.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(8))")]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Bahasa Indonesia.
    #[sea_orm(string_value = "id")]
    Id,
    /// English.
    #[sea_orm(string_value = "en")]
    En,
}

impl Language {
    pub const ALL: [Language; 2] = [Language::Id, Language::En];

    /// The ISO 639-1 code, as stored.
    pub fn code(self) -> &'static str {
        match self {
            Language::Id => "id",
            Language::En => "en",
        }
    }
}
