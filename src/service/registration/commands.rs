//! The registration use cases: register, resend SMS, resend email and the
//! two availability checks (confirm is in `confirm`). Every transport calls
//! these.
use anyhow::Context;
use chrono::{DateTime, Utc};
use entity::states::Channel;

use super::{
    batch,
    input::{self, Field, RegisterInput, ResendInput},
    messages::{Queued, new_completion_email, new_sms, queue_and_count},
    queries, store,
    views::{EmailAvailability, RegistrationTicket, UsernameAvailability},
};
use crate::{
    domain::Registration,
    error::{CoreError, CoreResult, LimitedOperation},
    service::{
        account_groups,
        client::ClientPresence,
        hosts::AuthenticatedHost,
        outbox::{self, CancelReason},
        request_limits, retrying, write,
    },
    state::Core,
};

pub async fn register(
    core: &Core,
    host: &AuthenticatedHost,
    request: RegisterInput,
    client: &ClientPresence,
) -> CoreResult<RegistrationTicket> {
    request_limits::admit(core, host, LimitedOperation::Register).await?;
    let now = core.clock.now();
    let applicant = input::registration(core, &request, now.date_naive(), |group| async move {
        account_groups::exists(core, &group).await
    })
    .await?;
    let phone = applicant.phone.clone();
    let email = applicant.email.clone();
    let (registration, code) = batch::write(
        core,
        batch::Prepared {
            host: host.clone(),
            applicant,
            now,
        },
        client,
    )
    .await?;
    core.outbox_signal.notify_one();
    tracing::info!(
        host = %host.name,
        registration = %registration.id,
        phone = %phone.masked(),
        email = email.as_ref().map(|e| e.masked()),
        "registration started"
    );
    Ok(RegistrationTicket::new(
        &registration,
        &code,
        &core.rules,
        now,
    ))
}

/// What both resends do first: find the open registration the request
/// names and spend one send of the channel inside the returned transaction.
async fn begin_resend(
    core: &Core,
    host: &AuthenticatedHost,
    request: &ResendInput,
    channel: Channel,
) -> CoreResult<(Registration, write::WriteTxn, DateTime<Utc>)> {
    let rules = &core.rules;
    let phone = input::resend_target(core, request)?;
    let now = core.clock.now();
    let registration = queries::latest_for_phone(core, host, &phone)
        .await?
        .unlocked(now)?;
    registration.ensure_open(rules)?;
    if channel == Channel::Email && registration.email.is_none() {
        return Err(CoreError::NoEmailOnRegistration);
    }
    let txn = write::begin(core).await?;
    if !store::spend_send(&txn, registration.id, channel, now, rules).await? {
        write::rollback(txn).await?;
        let latest = store::reload(&core.db, registration.id).await?;
        latest
            .ensure_open(rules)
            .map_err(|_| latest.lost_race(rules))?;
        let code = queries::current_code(&core.db, registration.id).await?;
        latest.ensure_may_send(channel, now, code.expires_at, rules)?;
        // The update lost to a concurrent resend that has since committed.
        return Err(CoreError::ResendTooSoon {
            retry_after_seconds: rules.resend_cooldown.num_seconds().max(1).unsigned_abs(),
        });
    }
    let registration = store::reload(&*txn, registration.id).await?;
    Ok((registration, txn, now))
}

pub async fn resend_sms(
    core: &Core,
    host: &AuthenticatedHost,
    request: ResendInput,
) -> CoreResult<RegistrationTicket> {
    let (registration, code, now) = retrying(core, || async {
        let (registration, txn, now) = begin_resend(core, host, &request, Channel::Sms).await?;
        store::supersede_codes(&txn, registration.id, now).await?;
        outbox::cancel_pending(
            &*txn,
            &[registration.id],
            Some(Channel::Sms),
            CancelReason::Superseded,
            now,
        )
        .await?;
        let (row, code, sms) = new_sms(core, host, &registration, now)?;
        store::insert_codes(&txn, vec![row]);
        let queued = Queued {
            host,
            registration_id: registration.id,
            now,
            messages: vec![sms],
        };
        queue_and_count(core, &txn, vec![queued]).await?;
        write::commit(txn).await?;
        Ok((registration, code, now))
    })
    .await?;
    core.outbox_signal.notify_one();
    tracing::info!(host = %host.name, registration = %registration.id, attempt = code.attempt, "SMS resent");
    Ok(RegistrationTicket::new(
        &registration,
        &code,
        &core.rules,
        now,
    ))
}

pub async fn resend_email(
    core: &Core,
    host: &AuthenticatedHost,
    request: ResendInput,
) -> CoreResult<RegistrationTicket> {
    let (registration, now) = retrying(core, || async {
        let (registration, txn, now) = begin_resend(core, host, &request, Channel::Email).await?;
        let email = registration
            .email
            .clone()
            .context("registration without email passed the email check")?;
        store::supersede_links(&txn, registration.id, now).await?;
        outbox::cancel_pending(
            &*txn,
            &[registration.id],
            Some(Channel::Email),
            CancelReason::Superseded,
            now,
        )
        .await?;
        let (row, message) = new_completion_email(core, &registration, &email, now)?;
        store::insert_completion_links(&txn, vec![row]);
        let queued = Queued {
            host,
            registration_id: registration.id,
            now,
            messages: vec![message],
        };
        queue_and_count(core, &txn, vec![queued]).await?;
        write::commit(txn).await?;
        Ok((registration, now))
    })
    .await?;
    core.outbox_signal.notify_one();
    tracing::info!(host = %host.name, registration = %registration.id, "completion email resent");
    let code = queries::current_code(&core.db, registration.id).await?;
    Ok(RegistrationTicket::new(
        &registration,
        &code,
        &core.rules,
        now,
    ))
}

pub async fn verify_username(
    core: &Core,
    host: &AuthenticatedHost,
    username: Field<String>,
) -> CoreResult<UsernameAvailability> {
    request_limits::admit(core, host, LimitedOperation::Verify).await?;
    let phone =
        input::username(core, &username, "username").map_err(|e| CoreError::Validation(vec![e]))?;
    Ok(UsernameAvailability {
        exists: queries::username_taken(core, phone.as_str()).await?,
        username: phone.as_str().to_owned(),
    })
}

pub async fn verify_email(
    core: &Core,
    host: &AuthenticatedHost,
    email: Field<String>,
) -> CoreResult<EmailAvailability> {
    request_limits::admit(core, host, LimitedOperation::Verify).await?;
    let email = input::email(&email)?;
    Ok(EmailAvailability {
        exists: queries::email_taken(core, email.as_str()).await?,
        email: email.as_str().to_owned(),
    })
}
