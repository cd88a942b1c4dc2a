//! Confirming a registration: the code checked (a guess in the
//! transaction that counts the attempt), then the password hashed and the
//! customer created. The API and the completion page both end here.
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    input::{self, ConfirmInput},
    queries::{self, LatestForPhone},
    store,
    views::ConfirmedRegistration,
};
use crate::{
    domain::{CodeCheck, Md5PasswordHex, PhoneNumber, Registration, SmsCode},
    error::{CoreError, CoreResult},
    metrics::AbandonedOperation,
    service::{
        client::{self, ClientPresence},
        hosts::AuthenticatedHost,
        is_unique_violation,
        outbox::{self, CancelReason},
        retrying,
        webhooks::{self, LockReason, WebhookEvent},
        write,
    },
    state::Core,
};

pub async fn confirm(
    core: &Core,
    host: &AuthenticatedHost,
    request: ConfirmInput,
    client: &ClientPresence,
) -> CoreResult<ConfirmedRegistration> {
    let parsed = input::confirmation(core, &request)?;
    confirm_parsed(
        core,
        host,
        &parsed.phone,
        &parsed.password,
        &parsed.code,
        ConfirmedVia::Api,
        client,
    )
    .await
}

/// How a confirmation arrived.
#[derive(Debug, Clone, Copy)]
pub enum ConfirmedVia {
    Api,
    /// The completion page behind this email link: the link is used up and
    /// the email counts as verified, since the customer received it.
    EmailLink {
        link_id: Uuid,
    },
}

/// Confirms with already-parsed input; the completion page calls this too.
pub async fn confirm_parsed(
    core: &Core,
    host: &AuthenticatedHost,
    phone: &PhoneNumber,
    password: &Md5PasswordHex,
    code: &SmsCode,
    via: ConfirmedVia,
    client: &ClientPresence,
) -> CoreResult<ConfirmedRegistration> {
    let rules = &core.rules;
    // The place in the hashing queue first: beyond it the request is
    // refused before it reads, counts or writes anything (issue 12: 503
    // with Retry-After in under 5 ms), and once admitted it is not refused
    // after its code was checked.
    let hashing = core.hashing.admit()?;
    let latest = queries::latest_for_phone(core, host, phone).await?;
    let registration = latest.unlocked(core.clock.now())?;
    registration.ensure_open(rules)?;
    let submitted = core.keys.token_hashes(&code.expose());
    let (check, current) = match typed_current_code(core, &registration, &submitted).await? {
        Some(code_id) => (
            CodeCheck::Current,
            CheckedCode {
                code_id,
                attempts_left: None,
                queued_webhook: false,
            },
        ),
        None => {
            retrying(core, || {
                check_code(
                    core,
                    host,
                    &registration,
                    &submitted,
                    latest.webhook_url.as_deref(),
                )
            })
            .await?
        }
    };
    if current.queued_webhook {
        core.outbox_signal.notify_one();
    }
    core.metrics.code_check(check);
    match check {
        CodeCheck::Current => {}
        CodeCheck::Superseded => return Err(CoreError::TokenSuperseded),
        CodeCheck::Expired => return Err(CoreError::TokenExpired),
        CodeCheck::Wrong => {
            return Err(CoreError::TokenInvalid {
                attempts_remaining: current.attempts_left.unwrap_or_default(),
            });
        }
    }

    // Nothing is written yet for a right code: a request whose client has
    // gone while it waits for a hashing slot gives its place back to those
    // still waiting, and the code stays good for a retry. Its answer, read
    // by nobody, says to retry; with `Idempotency-Key` that lets the key go.
    let Some(password_hash) = hashing.hash_unless(password, client.gone()).await? else {
        return Err(client::stopped_unwritten(core, AbandonedOperation::Confirm));
    };
    // Run whole again if the database gives the transaction up for a lost
    // race; a race the conditional updates detect is explained instead.
    let completed = retrying(core, || {
        complete_registration(
            core,
            &registration,
            &latest,
            current.code_id,
            phone,
            &password_hash,
            via,
        )
    })
    .await?;
    // Waking the delivery loop costs it a query for due messages, so only
    // when the host has an endpoint to hear of the completion.
    if completed.queued_webhook {
        core.outbox_signal.notify_one();
    }
    tracing::info!(host = %host.name, registration = %registration.id, customer = %completed.customer_id, "registration completed");
    Ok(ConfirmedRegistration {
        id: registration.id,
        customer_id: completed.customer_id,
        username: registration.phone.as_str().to_owned(),
        completed_at: completed.at,
    })
}

/// What the confirming transaction committed.
struct Completed {
    customer_id: Uuid,
    at: DateTime<Utc>,
    /// The host has an endpoint, so a `registration.completed` event waits
    /// in the outbox.
    queued_webhook: bool,
}

/// The confirming transaction: uses the code up, completes the registration
/// and creates the customer, or says which concurrent change got there first.
#[allow(clippy::too_many_arguments)]
async fn complete_registration(
    core: &Core,
    registration: &Registration,
    latest: &LatestForPhone,
    code_id: Uuid,
    phone: &PhoneNumber,
    password_hash: &str,
    via: ConfirmedVia,
) -> CoreResult<Completed> {
    let rules = &core.rules;
    let now = core.clock.now();
    let txn = write::begin(core).await?;
    if !store::consume_code(&txn, code_id, now).await?
        || !store::complete(&txn, registration.id, now, rules).await?
    {
        write::rollback(txn).await?;
        let latest = store::reload(&core.db, registration.id).await?;
        return Err(latest.lost_race(rules));
    }
    let email_verified = matches!(via, ConfirmedVia::EmailLink { .. });
    let inserted = store::insert_customer(
        &txn,
        registration,
        password_hash.to_owned(),
        email_verified,
        now,
    )
    .await;
    let customer_id = match inserted {
        Ok(id) => id,
        Err(e) if is_unique_violation(&e) => {
            write::rollback(txn).await?;
            return Err(
                if queries::username_taken(core, registration.phone.as_str()).await? {
                    CoreError::UsernameTaken
                } else {
                    CoreError::EmailTaken
                },
            );
        }
        Err(e) => {
            write::rollback(txn).await?;
            return Err(anyhow::Error::new(e)
                .context("Failed to insert customer")
                .into());
        }
    };
    if let ConfirmedVia::EmailLink { link_id } = via {
        store::mark_link_used(&txn, link_id, now).await?;
    }
    // Only a run of wrong codes seen before is cleared, one statement fewer
    // for every confirm typed right the first time. A wrong guess on the
    // same phone in the milliseconds since that read stays counted: it
    // would only ever matter to a later registration of a phone that is a
    // customer's username now.
    if latest.phone_failures > 0 {
        store::reset_phone_failures(&txn, registration.host_id, phone).await?;
    }
    outbox::cancel_pending(
        &*txn,
        &[registration.id],
        None,
        CancelReason::Completed,
        now,
    )
    .await?;
    let completed =
        WebhookEvent::registration_completed(registration.id, phone.as_str(), customer_id, now);
    if let Some(url) = &latest.webhook_url {
        webhooks::enqueue_event_to(&core.keys, &txn, url, registration.host_id, &completed, now)
            .await?;
    }
    write::commit(txn).await?;
    Ok(Completed {
        customer_id,
        at: now,
        queued_webhook: latest.webhook_url.is_some(),
    })
}

/// The current code's id when the submitted code is that code and it is
/// live (neither superseded nor expired: stricter than
/// `IssuedCode::check`'s `Current`, so an edge case takes the full path
/// below rather than this shortcut). A code typed right spends no
/// attempt (`check_code` takes one and gives it back), so it is read
/// without the transaction that counts guesses: one read where that
/// transaction was three statements between a begin and a commit
/// (docs/PERFORMANCE.md, session 32). The
/// guarantees stay with the confirming transaction, whose conditional
/// updates use the code up only if it is still current and unused and
/// complete the registration only if it is still pending with attempts
/// left: a resend or a run of wrong guesses in between wins, and is told
/// (`Registration::lost_race`). Any other code goes through `check_code`.
async fn typed_current_code(
    core: &Core,
    registration: &Registration,
    submitted: &[String],
) -> CoreResult<Option<Uuid>> {
    let current = queries::current_code(&core.db, registration.id).await?;
    let typed_right = current.matches(submitted) && current.is_live(core.clock.now());
    Ok(typed_right.then_some(current.id))
}

/// What a submitted code turned out to be, with the current code's id and,
/// for a wrong code, the attempts it left.
struct CheckedCode {
    code_id: Uuid,
    attempts_left: Option<u32>,
    /// This guess locked the registration or the phone and the host has an
    /// endpoint, so a `registration.locked` event waits in the outbox.
    queued_webhook: bool,
}

/// Compares a submitted code that is not the current one typed right (see
/// [`typed_current_code`]) in the transaction that counts it: the
/// attempt is taken first (refused once none remain), and given back only
/// when the code was not a wrong guess. If anything fails before the commit
/// nothing is counted and nothing about the code was revealed; once the
/// comparison is answered, the count is stored.
async fn check_code(
    core: &Core,
    host: &AuthenticatedHost,
    registration: &Registration,
    submitted: &[String],
    webhook_url: Option<&str>,
) -> CoreResult<(CodeCheck, CheckedCode)> {
    let rules = &core.rules;
    let now = core.clock.now();
    let txn = write::begin(core).await?;
    if !store::take_attempt(&txn, registration.id, rules).await? {
        write::rollback(txn).await?;
        return Err(store::reload(&core.db, registration.id)
            .await?
            .lost_race(rules));
    }
    let current = queries::current_code(&*txn, registration.id).await?;
    let is_earlier_code = if current.matches(submitted) {
        false
    } else {
        queries::is_earlier_code(&*txn, host, &registration.phone, submitted).await?
    };
    let check = current.check(submitted, now, || is_earlier_code);
    let mut phone_locked = false;
    if check == CodeCheck::Wrong {
        if store::count_phone_failure(&txn, registration.host_id, &registration.phone, now, rules)
            .await?
        {
            phone_locked = true;
            tracing::warn!(phone = %registration.phone.masked(), "phone refused after too many wrong codes");
        }
    } else {
        store::give_back_attempt(&txn, registration.id).await?;
    }
    // Read after counting, since concurrent guesses count too. Only a wrong
    // code reports them; any other gave its attempt back.
    let attempts_left = if check == CodeCheck::Wrong {
        Some(
            store::reload(&*txn, registration.id)
                .await?
                .attempts_remaining(rules),
        )
    } else {
        None
    };
    // This wrong code is the one that locked: the host hears of it once.
    let locked = if phone_locked {
        Some(LockReason::PhoneLocked)
    } else if attempts_left == Some(0) {
        Some(LockReason::AttemptsExhausted)
    } else {
        None
    };
    let mut queued_webhook = false;
    if let (Some(reason), Some(url)) = (locked, webhook_url) {
        let event = WebhookEvent::registration_locked(
            registration.id,
            registration.phone.as_str(),
            reason,
            now,
        );
        webhooks::enqueue_event_to(&core.keys, &txn, url, registration.host_id, &event, now)
            .await?;
        queued_webhook = true;
    }
    write::commit(txn).await?;
    Ok((
        check,
        CheckedCode {
            code_id: current.id,
            attempts_left,
            queued_webhook,
        },
    ))
}
