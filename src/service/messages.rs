//! The texts of outgoing messages, and the outbox rows that carry them.
use chrono::{DateTime, Utc};
use entity::outbox_message;
use sea_orm::ActiveValue::Set;
use uuid::Uuid;

use crate::domain::SmsCode;

pub const CHANNEL_SMS: &str = "sms";
pub const CHANNEL_EMAIL: &str = "email";
pub const OUTBOX_PENDING: &str = "pending";
pub const OUTBOX_SENT: &str = "sent";
pub const OUTBOX_DEAD: &str = "dead";

pub fn sms_text(code: &SmsCode, expiry_minutes: u32) -> String {
    format!(
        "Your registration code is {}. It expires in {expiry_minutes} minutes. Never share it.",
        code.expose()
    )
}

pub struct CompletionEmail {
    pub subject: String,
    pub body: String,
}

pub fn completion_email(name: &str, link: &str, expiry_hours: u32) -> CompletionEmail {
    CompletionEmail {
        subject: "Complete your registration".into(),
        body: format!(
            "Hello {name},\n\nTo complete your registration, open this link and enter the code we sent you by SMS:\n\n{link}\n\nThe link works for {expiry_hours} hours. If you did not register, ignore this email.\n"
        ),
    }
}

pub fn queued_sms(
    registration_id: Uuid,
    phone: &str,
    text: String,
    now: DateTime<Utc>,
) -> outbox_message::ActiveModel {
    queued(registration_id, CHANNEL_SMS, phone, None, text, now)
}

pub fn queued_email(
    registration_id: Uuid,
    email: &str,
    message: CompletionEmail,
    now: DateTime<Utc>,
) -> outbox_message::ActiveModel {
    queued(
        registration_id,
        CHANNEL_EMAIL,
        email,
        Some(message.subject),
        message.body,
        now,
    )
}

fn queued(
    registration_id: Uuid,
    channel: &str,
    recipient: &str,
    subject: Option<String>,
    body: String,
    now: DateTime<Utc>,
) -> outbox_message::ActiveModel {
    outbox_message::ActiveModel {
        id: Set(Uuid::now_v7()),
        registration_id: Set(registration_id),
        channel: Set(channel.to_owned()),
        recipient: Set(recipient.to_owned()),
        subject: Set(subject),
        body: Set(Some(body)),
        status: Set(OUTBOX_PENDING.to_owned()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        lease_until: Set(None),
        last_error: Set(None),
        provider_message_id: Set(None),
        created_at: Set(now),
        sent_at: Set(None),
    }
}
