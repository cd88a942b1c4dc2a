//! A transport that keeps what it sends in the process, so tests assert on
//! delivered messages directly. Configured as `transport = "memory"`; never
//! for production, where a restart would lose what was "sent".
use std::sync::{Arc, Mutex, PoisonError};

use entity::states::Channel;

use super::OutgoingMessage;

/// One delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    pub channel: Channel,
    /// The outbox message id.
    pub id: uuid::Uuid,
    pub recipient: String,
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
}

/// Shared by the email and SMS memory transports of one application.
#[derive(Clone, Default)]
pub struct MemoryOutbox(Arc<Mutex<Vec<SentMessage>>>);

impl MemoryOutbox {
    pub(super) fn record(&self, channel: Channel, message: &OutgoingMessage<'_>) {
        self.lock().push(SentMessage {
            channel,
            id: message.id,
            recipient: message.recipient.to_owned(),
            subject: message.subject.map(str::to_owned),
            text: message.body.to_owned(),
            html: message.html_body.map(str::to_owned),
        });
    }

    /// Everything sent so far, in order.
    pub fn messages(&self) -> Vec<SentMessage> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<SentMessage>> {
        // A panic while pushing cannot leave the list half-written.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
