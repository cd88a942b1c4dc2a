//! Group commit for registers. SQLite has one writer at a time, and on
//! every database a register's transaction is a handful of statements, each
//! a round trip: writing the registers that arrive together in one
//! transaction, with one multi-row statement per table, costs little more
//! than writing one. Each request leaves its prepared register in
//! `Core::register_batches`; whoever gets a writer's turn next writes the
//! registers waiting (up to [`MOST_PER_BATCH`]) and answers each. SQLite
//! writes one batch at a time, other databases a few side by side.
//!
//! A batch's transaction first reads what each register is checked against
//! (the phone's lock, the username and email, the cooldown, the host's
//! webhook endpoint: `checks::register_checks`, one statement for all) and
//! answers the registers those refuse; it writes the others. Every
//! guarantee of a register written alone holds: a batch that any later rule
//! would refuse in part (a quota, a budget, a unique key) is rolled back
//! whole, and its registers are written again one by one, so exactly the
//! ones a lone write would refuse are refused, with their own error. Two
//! registers of one phone by one host are never written at once, in one
//! batch or in two: the later replaces the earlier, so it is written after
//! it.
use chrono::{DateTime, Utc};
use tracing::Instrument;
use uuid::Uuid;

use super::{
    checks::{self, Applicant},
    input::NewRegistration,
    messages::{Queued, new_completion_email, new_sms, queue_and_count},
    store,
};
use crate::{
    domain::{IssuedCode, PhoneNumber, Registration, registration::ensure_register_cooled_down},
    error::{CoreError, CoreResult},
    group_commit::GroupCommit,
    metrics::AbandonedOperation,
    service::{
        account_groups,
        client::{self, ClientPresence},
        hosts::AuthenticatedHost,
        is_foreign_key_violation,
        outbox::{self, CancelReason},
        retrying,
        webhooks::{self, WebhookEvent},
        write,
    },
    state::Core,
};

/// The most registers one transaction writes. Each batch size is another
/// SQL text of every multi-row statement, prepared and kept on each pooled
/// connection that runs it (sqlx's statement cache), so sizes are powers
/// of two (`GroupCommit::take`). At 64 connections the mean batch is 32
/// whether the cap is 32 or 64, and 32 ran no slower with no higher peak
/// memory (docs/PERFORMANCE.md, session 9) and smaller statements.
const MOST_PER_BATCH: usize = 32;

/// A register that passed every check, ready to be written.
pub(super) struct Prepared {
    pub host: AuthenticatedHost,
    pub applicant: NewRegistration,
    pub now: DateTime<Utc>,
}

type Stored = (Registration, IssuedCode);

/// What a batch's transaction answers each of its registers, in order:
/// written, or refused by its checks.
type Answers = Vec<CoreResult<Stored>>;

struct Waiting {
    prepared: Prepared,
    answer: tokio::sync::oneshot::Sender<CoreResult<Stored>>,
}

/// Writes a register with the others waiting, and answers it. If its client
/// goes while it still waits to be taken, nothing has been written: it
/// leaves the queue (no SMS is sent for nobody) and says to retry.
pub(super) async fn write(
    core: &Core,
    prepared: Prepared,
    client: &ClientPresence,
) -> CoreResult<Stored> {
    let queue = &core.register_batches;
    let (answer, mut answered) = tokio::sync::oneshot::channel();
    let key = target_key(prepared.host.id, &prepared.applicant.phone);
    let id = queue.leave(key, Box::new(Waiting { prepared, answer }));
    // If this request goes away before its register is taken, it is not
    // written later for nobody.
    let _withdraw = Withdraw { queue, id };
    // Until the client is seen gone; then, if another writer has taken
    // the register already, its answer is awaited like any other.
    let mut watching_client = true;
    loop {
        let finished = queue.finished();
        tokio::pin!(finished);
        finished.as_mut().enable();
        let writer = tokio::select! {
            biased;
            stored = &mut answered => return stored.map_err(|_| abandoned())?,
            () = client.gone(), if watching_client => {
                withdraw_if_untaken(core, id)?;
                watching_client = false;
                continue;
            }
            writer = queue.writer() => writer.map_err(|_| abandoned())?,
        };
        let mut batch = queue.take(MOST_PER_BATCH);
        if batch.is_empty() {
            // Taken by another writer, or its phone is being written: wait
            // for the answer or for a batch to end.
            drop(writer);
            tokio::select! {
                biased;
                stored = &mut answered => return stored.map_err(|_| abandoned())?,
                () = client.gone(), if watching_client => {
                    withdraw_if_untaken(core, id)?;
                    watching_client = false;
                }
                () = finished => {}
            }
            continue;
        }
        let taken: Vec<Waiting> = batch
            .take_items()
            .into_iter()
            .filter_map(|item| item.downcast::<Waiting>().ok().map(|waiting| *waiting))
            .collect();
        let core = core.clone();
        // A task of its own: a batch once taken is written and every
        // request in it answered, even if this one goes away meanwhile.
        let writing = tokio::spawn(
            async move {
                write_and_answer(&core, taken).await;
                // Its phones may be written again, then another batch.
                drop(batch);
                drop(writer);
            }
            .instrument(tracing::Span::current()),
        );
        // A panic drops the answers: the requests see `abandoned`.
        let _ = writing.await;
    }
}

/// Registers of one phone by one host are written one after the other
/// (`GroupCommit`): the later replaces the earlier.
fn target_key(host_id: Uuid, phone: &PhoneNumber) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (host_id, phone.as_str()).hash(&mut hasher);
    hasher.finish()
}

/// Takes a register back from the queue when its request goes away
/// before it was taken (a no-op once it was).
struct Withdraw<'q> {
    queue: &'q GroupCommit,
    id: u64,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        let _ = self.queue.withdraw(self.id);
    }
}

/// The client has gone: its register leaves the queue unwritten unless a
/// batch has taken it already (`Ok`: its answer is then awaited as any).
fn withdraw_if_untaken(core: &Core, id: u64) -> CoreResult<()> {
    if core.register_batches.withdraw(id) {
        return Err(client::stopped_unwritten(
            core,
            AbandonedOperation::Register,
        ));
    }
    Ok(())
}

fn abandoned() -> CoreError {
    anyhow::anyhow!("the register's batch ended without an answer").into()
}

async fn write_and_answer(core: &Core, batch: Vec<Waiting>) {
    let left = if batch.len() > 1 {
        write_together(core, batch).await
    } else {
        batch
    };
    for waiting in left {
        write_alone(core, waiting).await;
    }
}

/// Writes `together` in one transaction and answers each; when that fails
/// (a rule refused one of them), returns them all to be written alone.
async fn write_together(core: &Core, together: Vec<Waiting>) -> Vec<Waiting> {
    let prepared = together.iter().map(|w| &w.prepared).collect::<Vec<_>>();
    match retrying(core, || write_registers(core, &prepared)).await {
        Ok(answers) => {
            // A transaction that wrote nothing (its checks refused every
            // register) is not a batch.
            let written = answers.iter().filter(|a| a.is_ok()).count();
            if written > 0 {
                core.metrics.registers_written_together(written);
            }
            for (waiting, answer) in together.into_iter().zip(answers) {
                let _ = waiting.answer.send(answer);
            }
            Vec::new()
        }
        Err(error) => {
            tracing::debug!(error = %error, registers = together.len(), "batch refused; writing its registers one by one");
            together
        }
    }
}

async fn write_alone(core: &Core, waiting: Waiting) {
    let alone = [&waiting.prepared];
    let written = match retrying(core, || write_registers(core, &alone)).await {
        // Most likely its account group, which the checks may have
        // trusted from memory; for any other key the error stands.
        Err(error) if is_foreign_key_violation(&error) => {
            let group = &waiting.prepared.applicant.account_group;
            Err(account_groups::refused_by_foreign_key(core, group, error).await)
        }
        written => written,
    };
    let answer = written.and_then(|answers| {
        answers
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("a register wrote nothing").into())
            .and_then(|answer| answer)
    });
    if answer.is_ok() {
        core.metrics.registers_written_together(1);
    }
    let _ = waiting.answer.send(answer);
}

/// One transaction for all of `batch`: the checks of every register, read
/// in one statement, and for those they admit, the pending registrations
/// of the same (host, phone) superseded and their messages cancelled, the
/// registrations, their codes and links, each one's `registration.started`
/// event, and last, just before the commit, every message queued and
/// counted (`queue_and_count`). One statement per table, whatever the
/// number of registers (webhook events apart); the inserts are held
/// (`WriteTxn::hold`) and go with the count, on PostgreSQL in its round
/// trip.
async fn write_registers(core: &Core, batch: &[&Prepared]) -> CoreResult<Answers> {
    let txn = write::begin(core).await?;
    let applicants = batch
        .iter()
        .map(|p| Applicant {
            host_id: p.host.id,
            phone: &p.applicant.phone,
            email: p.applicant.email.as_ref().map(|e| e.as_str()),
        })
        .collect::<Vec<_>>();
    let checks = checks::register_checks(&*txn, &applicants).await?;
    let mut answers: Vec<Option<CoreResult<Stored>>> = Vec::with_capacity(batch.len());
    let mut admitted = Vec::with_capacity(batch.len());
    for (prepared, checks) in batch.iter().zip(checks) {
        match checks.admit(prepared.now, &core.rules) {
            Ok(()) => {
                answers.push(None);
                admitted.push(Admitted {
                    prepared,
                    replaces_pending: checks.replaces_pending,
                    webhook_url: checks.webhook_url,
                });
            }
            Err(refusal) => answers.push(Some(Err(refusal))),
        }
    }
    let mut written = if admitted.is_empty() {
        write::rollback(txn).await?;
        Vec::new()
    } else {
        write_admitted(core, txn, &admitted).await?
    }
    .into_iter();
    Ok(answers
        .into_iter()
        .map(|answer| match answer {
            Some(refused) => refused,
            None => written
                .next()
                .ok_or_else(|| anyhow::anyhow!("an admitted register was not written").into()),
        })
        .collect())
}

/// A register its checks admitted, with what they found that its writes
/// depend on.
struct Admitted<'a> {
    prepared: &'a Prepared,
    replaces_pending: bool,
    /// Where the host's webhook events go, if anywhere.
    webhook_url: Option<String>,
}

/// The writes of [`write_registers`] for the registers its checks
/// admitted; commits `txn`.
async fn write_admitted(
    core: &Core,
    txn: write::WriteTxn,
    admitted: &[Admitted<'_>],
) -> CoreResult<Vec<Stored>> {
    let batch = admitted.iter().map(|a| a.prepared).collect::<Vec<_>>();
    let latest = batch
        .iter()
        .map(|p| p.now)
        .max()
        .unwrap_or_else(|| core.clock.now());
    // The database refuses a second pending registration of a host and
    // phone (`idx_registration_one_pending`). A register whose checks saw
    // none needs neither the supersede nor the cooldown checked again
    // under it: should another transaction write one meanwhile, this
    // one's insert is refused, a lost race, and the transaction runs
    // again whole, its checks then seeing it (`write::new_rows_refused`).
    let superseding = admitted
        .iter()
        .filter(|a| a.replaces_pending)
        .collect::<Vec<_>>();
    let targets = superseding
        .iter()
        .map(|a| (a.prepared.host.id, &a.prepared.applicant.phone))
        .collect::<Vec<(Uuid, _)>>();
    let superseded = if targets.is_empty() {
        Vec::new()
    } else {
        store::supersede_pending(&txn, &targets).await?
    };
    if !targets.is_empty() && core.rules.register_cooldown > chrono::Duration::zero() {
        // Checked again here, after the supersede has locked the phones'
        // pending rows: two registers of one phone that passed the checks
        // side by side (two batch writers, two instances) are written one
        // after the other, and the later one is refused. A refusal fails
        // the batch, whose registers are then written alone, so only the
        // refused one hears of it.
        let last = store::last_registered(&txn, &targets).await?;
        for prepared in superseding.iter().map(|a| a.prepared) {
            let key = (
                prepared.host.id,
                prepared.applicant.phone.as_str().to_owned(),
            );
            ensure_register_cooled_down(last.get(&key).copied(), prepared.now, &core.rules)?;
        }
    }
    outbox::cancel_pending(&*txn, &superseded, None, CancelReason::Superseded, latest).await?;
    let registrations = store::insert_registrations(
        &txn,
        batch
            .iter()
            .map(|p| (p.host.id, p.applicant.clone(), p.now))
            .collect(),
    )?;
    let mut code_rows = Vec::with_capacity(batch.len());
    let mut codes = Vec::with_capacity(batch.len());
    let mut link_rows = Vec::new();
    let mut queued = Vec::with_capacity(batch.len());
    for (prepared, registration) in batch.iter().zip(&registrations) {
        let (row, code, sms) = new_sms(core, &prepared.host, registration, prepared.now)?;
        code_rows.push(row);
        codes.push(code);
        let mut messages = vec![sms];
        if let Some(email) = &registration.email {
            let (row, message) =
                new_completion_email(core, registration, email.as_str(), prepared.now)?;
            link_rows.push(row);
            messages.push(message);
        }
        queued.push(Queued {
            host: &prepared.host,
            registration_id: registration.id,
            now: prepared.now,
            messages,
        });
    }
    store::insert_codes(&txn, code_rows);
    store::insert_completion_links(&txn, link_rows);
    for (one, registration) in admitted.iter().zip(&registrations) {
        if let Some(url) = &one.webhook_url {
            let now = one.prepared.now;
            let started = WebhookEvent::registration_started(
                registration.id,
                registration.phone.as_str(),
                now,
            );
            webhooks::hold_event_to(&core.keys, &txn, url, one.prepared.host.id, &started, now);
        }
    }
    queue_and_count(core, &txn, queued).await?;
    write::commit(txn).await?;
    Ok(registrations.into_iter().zip(codes).collect())
}
