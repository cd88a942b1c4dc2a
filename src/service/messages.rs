//! Outbox rows: messages rendered at queue time and stored with the
//! registration in one transaction.
use chrono::{DateTime, Utc};
use entity::outbox_message;
use sea_orm::ActiveValue::Set;
use uuid::Uuid;

use crate::{delivery::templates::RenderedEmail, metrics::Channel};

pub const OUTBOX_PENDING: &str = "pending";
pub const OUTBOX_SENT: &str = "sent";
pub const OUTBOX_DEAD: &str = "dead";

pub fn queued_sms(
    registration_id: Uuid,
    phone: &str,
    text: String,
    now: DateTime<Utc>,
) -> outbox_message::ActiveModel {
    queued(registration_id, Channel::Sms, phone, None, text, None, now)
}

pub fn queued_email(
    registration_id: Uuid,
    email: &str,
    message: RenderedEmail,
    now: DateTime<Utc>,
) -> outbox_message::ActiveModel {
    queued(
        registration_id,
        Channel::Email,
        email,
        Some(message.subject),
        message.text,
        Some(message.html),
        now,
    )
}

fn queued(
    registration_id: Uuid,
    channel: Channel,
    recipient: &str,
    subject: Option<String>,
    body: String,
    html_body: Option<String>,
    now: DateTime<Utc>,
) -> outbox_message::ActiveModel {
    outbox_message::ActiveModel {
        id: Set(Uuid::now_v7()),
        registration_id: Set(registration_id),
        channel: Set(channel.name().to_owned()),
        recipient: Set(recipient.to_owned()),
        subject: Set(subject),
        body: Set(Some(body)),
        html_body: Set(html_body),
        status: Set(OUTBOX_PENDING.to_owned()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        lease_until: Set(None),
        last_error: Set(None),
        last_error_class: Set(None),
        provider_message_id: Set(None),
        created_at: Set(now),
        sent_at: Set(None),
    }
}
