//! The outbox, and the only module that touches its tables. `enqueue_*`
//! run in the caller's transaction, so a message exists exactly when the
//! registration change that wants it committed. `dispatch` is what the
//! delivery loop calls (claim with a lease, record each result); `history`
//! is what operators and hosts read (listing, requeueing, the timeline).
//! `delivery` holds the transports and the loop itself.
mod cancel;
mod dispatch;
mod history;
mod receipts;
mod record;
mod stats;

pub use cancel::{CancelReason, cancel_expired, cancel_for_host, cancel_pending};
pub use dispatch::{
    Carrier, ClaimedMessage, Recorded, SendResult, claim_batch, due, leased, take_leases,
};
pub use history::{
    Delivery, DeliveryEvent, deliveries_by_registration, list, retry_dead, timeline_rows,
    waiting_by_channel, waiting_by_channel_query,
};
pub use receipts::{Receipt, ReceiptApplied, ReceiptStatus, apply_receipt};
pub use record::{SendOutcome, backoff, record_results, record_results_and_claim};
pub use stats::{SendCount, sends_by_day, sms_queued_since};

use chrono::{DateTime, Utc};
use entity::{
    outbox_message,
    states::{Channel, OutboxStatus},
};
use sea_orm::{ActiveValue::Set, EntityTrait, QueryTrait, sea_query::InsertStatement};
use uuid::Uuid;

use crate::{
    crypto::Keys, domain::PhoneNumber, service::write::WriteTxn, templates::RenderedEmail,
};

/// The insert queueing a signed webhook to a host (`service::webhooks`
/// builds it), for the caller's transaction to send or hold: the
/// recipient is the endpoint's URL, the body the JSON payload. With the
/// message's id.
pub fn webhook_insert(
    keys: &Keys,
    registration_id: Uuid,
    url: &str,
    payload: String,
    now: DateTime<Utc>,
) -> (Uuid, InsertStatement) {
    let message = NewMessage {
        registration_id,
        channel: Channel::Webhook,
        recipient: url,
        country: None,
        subject: None,
        body: payload,
        html_body: None,
    };
    let (id, row) = queued_row(keys, message, now);
    (id, outbox_message::Entity::insert(row).into_query())
}

/// A message to a customer, before it is queued.
pub struct NewMessage<'a> {
    registration_id: Uuid,
    channel: Channel,
    recipient: &'a str,
    country: Option<String>,
    subject: Option<String>,
    body: String,
    html_body: Option<String>,
}

impl<'a> NewMessage<'a> {
    /// An SMS; its recipient's country is kept for the host's send
    /// statistics.
    pub fn sms(registration_id: Uuid, phone: &'a PhoneNumber, text: String) -> Self {
        Self {
            registration_id,
            channel: Channel::Sms,
            recipient: phone.as_str(),
            country: phone.region(),
            subject: None,
            body: text,
            html_body: None,
        }
    }

    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// Borrowed for as long as the message's recipient, not the message.
    pub fn recipient(&self) -> &'a str {
        self.recipient
    }

    pub fn email(registration_id: Uuid, email: &'a str, message: RenderedEmail) -> Self {
        let RenderedEmail {
            subject,
            text,
            html,
        } = message;
        Self {
            registration_id,
            channel: Channel::Email,
            recipient: email,
            country: None,
            subject: Some(subject),
            body: text,
            html_body: Some(html),
        }
    }
}

/// Queues messages in one insert (a register queues its SMS and its email
/// together), held in `txn` to go with its next statement
/// (`WriteTxn::hold`).
pub fn enqueue_all(keys: &Keys, txn: &WriteTxn, messages: Vec<NewMessage<'_>>, now: DateTime<Utc>) {
    if messages.is_empty() {
        return;
    }
    let rows = messages
        .into_iter()
        .map(|message| queued_row(keys, message, now).1);
    txn.hold(outbox_message::Entity::insert_many(rows).into_query());
}

/// The pending row of a message, and its new id. Bodies are sealed
/// (`Keys::seal`): they carry a live code or link.
fn queued_row(
    keys: &Keys,
    message: NewMessage<'_>,
    now: DateTime<Utc>,
) -> (Uuid, outbox_message::ActiveModel) {
    let id = Uuid::now_v7();
    let row = outbox_message::ActiveModel {
        id: Set(id),
        registration_id: Set(message.registration_id),
        channel: Set(message.channel),
        recipient: Set(message.recipient.to_owned()),
        subject: Set(message.subject),
        body: Set(Some(keys.seal(id.as_bytes(), &message.body))),
        html_body: Set(message
            .html_body
            .map(|html| keys.seal(id.as_bytes(), &html))),
        status: Set(OutboxStatus::Pending),
        attempts: Set(0),
        next_attempt_at: Set(now),
        lease_until: Set(None),
        last_error: Set(None),
        last_error_class: Set(None),
        lease_token: Set(None),
        provider_message_id: Set(None),
        created_at: Set(now),
        sent_at: Set(None),
        provider: Set(None),
        provider_failures: Set(0),
        country: Set(message.country),
    };
    (id, row)
}
