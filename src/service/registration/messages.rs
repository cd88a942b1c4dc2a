//! The messages a registration's transactions queue: a new SMS code or
//! completion link and the message carrying it, and their queueing with
//! the quota and budget counts. Register (one or a batch of them) and both
//! resends use these.
use chrono::{DateTime, Utc};
use entity::{completion_link, sms_token, states::Channel};
use uuid::Uuid;

use super::store;
use crate::{
    crypto::{generate_sms_code, random_token, sha256_hex},
    domain::{IssuedCode, Registration},
    error::CoreResult,
    service::{
        hosts::AuthenticatedHost,
        outbox::{self, NewMessage},
        quotas::{self, HostSends, QueuedSend},
        spend::{self, QueuedSms},
        write::WriteTxn,
    },
    state::Core,
};

/// Several registers written together that a rule refused in part; they
/// are written again one by one (`batch`), and the one refused is told.
#[derive(Debug, thiserror::Error)]
#[error("a rule refused one of the registers written together")]
pub(super) struct Refused;

/// A new SMS code and the SMS carrying it, with the host's autofill lines:
/// the code's row for the caller to insert, and the message to queue with
/// its others.
pub(super) fn new_sms<'r>(
    core: &Core,
    host: &AuthenticatedHost,
    registration: &'r Registration,
    now: DateTime<Utc>,
) -> CoreResult<(sms_token::ActiveModel, IssuedCode, NewMessage<'r>)> {
    let code = generate_sms_code(core.settings.registration.token_digits);
    let hash = core.keys.token_hash(&code.expose());
    let (row, issued) = store::code_row(registration, &code, hash, now, &core.rules)?;
    let text = core.templates.sms(
        registration.language,
        &code.expose(),
        core.settings.registration.token_expiry_minutes,
        &registration.name,
        &host.autofill,
    )?;
    let sms = NewMessage::sms(registration.id, &registration.phone, text);
    Ok((row, issued, sms))
}

/// A new single-use completion link and the email carrying it: the link's
/// row for the caller to insert, and the message to queue.
pub(super) fn new_completion_email<'e>(
    core: &Core,
    registration: &Registration,
    email: &'e str,
    now: DateTime<Utc>,
) -> CoreResult<(completion_link::ActiveModel, NewMessage<'e>)> {
    let link_token = random_token(32);
    let row =
        store::completion_link_row(registration.id, sha256_hex(&link_token), now, &core.rules);
    let link = format!("{}/complete/{link_token}", core.settings.public_base_url());
    let message = core.templates.email(
        registration.language,
        &registration.name,
        &link,
        core.settings.registration.completion_link_expiry_hours,
    )?;
    Ok((row, NewMessage::email(registration.id, email, message)))
}

/// The messages one transaction queues for one registration.
pub(super) struct Queued<'a> {
    pub host: &'a AuthenticatedHost,
    pub registration_id: Uuid,
    pub now: DateTime<Utc>,
    pub messages: Vec<NewMessage<'a>>,
}

/// Queues a transaction's messages in one statement and counts them
/// against the send quotas and, for an SMS, the host's monthly budget; the
/// caller commits right after (see `quotas::count` for why last). A
/// refusal of one registration's messages is reported as its error; one of
/// several registers written together fails the batch without a report,
/// and they are written one by one (`batch`).
pub(super) async fn queue_and_count(
    core: &Core,
    txn: &WriteTxn,
    queued: Vec<Queued<'_>>,
) -> CoreResult<()> {
    let alone = queued.len() == 1;
    let latest = queued
        .iter()
        .map(|q| q.now)
        .max()
        .unwrap_or_else(|| core.clock.now());
    let mut counted = Vec::with_capacity(queued.len());
    let mut sms = Vec::with_capacity(queued.len());
    let mut messages = Vec::with_capacity(queued.len() * 2);
    for one in queued {
        let sends: Vec<QueuedSend<'_>> = one
            .messages
            .iter()
            .map(|message| QueuedSend {
                channel: message.channel(),
                recipient: message.recipient(),
            })
            .collect();
        if sends.iter().any(|send| send.channel == Channel::Sms) {
            sms.push(QueuedSms {
                host: one.host,
                registration_id: one.registration_id,
                now: one.now,
            });
        }
        counted.push(HostSends {
            host_id: one.host.id,
            now: one.now,
            sends,
        });
        messages.extend(one.messages);
    }
    // The messages' insert goes with the count, and with it every insert
    // the transaction holds (`WriteTxn::hold`): on PostgreSQL one round
    // trip for a register batch's rows.
    outbox::enqueue_all(&core.keys, txn, messages, latest);
    let refusal = match quotas::count(core, txn, &counted).await? {
        Some(refusal) => Some(refusal),
        None => spend::count_sms(core, txn, &sms).await?,
    };
    match refusal {
        None => Ok(()),
        Some(refusal) if alone => Err(refusal.reported(core)),
        Some(_) => Err(anyhow::Error::new(Refused).into()),
    }
}
