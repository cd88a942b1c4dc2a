//! The delivery loop: claims due messages through the outbox module, hands
//! each to its channel's transport (`sends`) and records how it went.
mod sends;

use std::{sync::atomic::Ordering, time::Duration};

use entity::states::AttemptOutcome;
use futures::{FutureExt, StreamExt, stream::FuturesUnordered};
use tokio::{sync::watch, time::Instant};
use uuid::Uuid;

use super::{EmailSender, SmsProviders, WebhookTransport};
use crate::{
    error::CoreResult,
    service::{
        outbox::{self, Carrier, ClaimedMessage, Recorded, SendOutcome, SendResult},
        retention,
    },
    state::Core,
};

/// How often this instance asks whether the retention job is due; the job
/// itself runs once per `retention.interval_minutes` across all instances.
const RETENTION_CHECK: Duration = Duration::from_secs(60);

pub struct Dispatcher {
    core: Core,
    email: EmailSender,
    sms: SmsProviders,
    /// Signed webhooks to hosts; without it they fail permanently.
    webhook: Option<WebhookTransport>,
    /// Turns true when the process stops: no new claims after that.
    stopping: watch::Receiver<bool>,
    /// Names this instance as the holder of the retention lease.
    instance: Uuid,
}

/// A send that finished, with what recording and counting it need.
struct Finished {
    message: ClaimedMessage,
    carrier: Option<Carrier>,
    result: SendResult,
    /// The SMS recipient's country, for the metrics.
    country: Option<String>,
}

/// When the loop claims more due messages, alone or in a recording's
/// transaction: as many as the sends still out leave room for, once at
/// most half of `most` are out.
#[derive(Clone, Copy)]
struct ClaimRule {
    most: usize,
}

impl ClaimRule {
    fn room(self, out: usize) -> usize {
        if out <= self.most / 2 {
            self.most - out
        } else {
            0
        }
    }
}

/// Starts the sends of a claim that asked for `room` messages; whether it
/// took all of them, in which case more may be due.
fn took_all<F>(
    claimed: CoreResult<Vec<F>>,
    room: usize,
    sending: &mut FuturesUnordered<F>,
) -> bool {
    match claimed {
        Ok(started) => {
            let full = started.len() == room;
            sending.extend(started);
            full
        }
        Err(error) => {
            tracing::error!(error = ?error, "outbox dispatch failed");
            false
        }
    }
}

/// What a recording claimed, and how many it asked for.
struct ClaimedAlong {
    messages: Vec<ClaimedMessage>,
    room: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DispatchReport {
    pub sent: usize,
    pub failed: usize,
    pub dead: usize,
    /// Sends whose lease ran out before their result was recorded.
    pub lease_lost: usize,
}

impl Dispatcher {
    pub fn new(core: Core, email: EmailSender, sms: SmsProviders) -> Self {
        Self {
            core,
            email,
            sms,
            webhook: None,
            stopping: watch::channel(false).1,
            instance: Uuid::new_v4(),
        }
    }

    pub fn with_webhooks(mut self, webhook: WebhookTransport) -> Self {
        self.webhook = Some(webhook);
        self
    }

    /// Runs until `stopping` turns true (or the future is dropped): keeps up
    /// to `delivery.batch_size` sends out at once, claiming more due
    /// messages whenever half of them have come back, and records each send
    /// when it finishes; a claim that falls due as sends come back is made
    /// in the transaction that records them (on SQLite one turn at the
    /// writer, not two). It asks for due messages only when some may be
    /// there: at each poll interval, when a transaction signals new ones,
    /// or when its last claim took all it asked for; not after every
    /// recording, where the question almost always finds nothing. A send
    /// that takes its transport's whole time-out holds up only itself, not
    /// the messages that come due meanwhile (a pass that waited for all
    /// its sends before claiming more did), and while sends are out the
    /// loop still goes round every poll interval, so readiness sees it
    /// waiting, not stuck. Sends in progress when stopping begins are
    /// finished and recorded; nothing new is claimed.
    pub async fn run(mut self, stopping: watch::Receiver<bool>) {
        self.stopping = stopping;
        let mut stop = self.stopping.clone();
        let poll = Duration::from_millis(self.core.settings.delivery.poll_interval_ms);
        let most = self.core.settings.delivery.batch_size as usize;
        let mut last_retention_check = Instant::now();
        let mut sending = FuturesUnordered::new();
        // Claims in groups, not one by one as sends come back: on SQLite
        // each claim is a turn at the one writer.
        let claiming = ClaimRule { most };
        let mut worth_asking = true;
        // A deadline, not a sleep started afresh each time round: sends
        // coming back more often than the interval must not put off
        // claiming the retries that came due meanwhile.
        let mut next_poll = Instant::now() + poll;
        loop {
            if *self.stopping.borrow() {
                while let Some(first) = sending.next().await {
                    self.record_and_go_on(first, &mut sending, None).await;
                }
                tracing::info!("delivery stopped");
                return;
            }
            self.core
                .dispatcher_beat
                .store(self.core.clock.now().timestamp_millis(), Ordering::Relaxed);
            if last_retention_check.elapsed() > RETENTION_CHECK {
                last_retention_check = Instant::now();
                if let Err(error) = retention::run_if_due(&self.core, self.instance).await {
                    tracing::error!(error = ?error, "retention failed");
                }
            }
            let room = claiming.room(sending.len());
            if worth_asking && room > 0 {
                let started = async { self.start_sends(self.claim(room).await?).await }.await;
                worth_asking = took_all(started, room, &mut sending);
            }
            tokio::select! {
                biased;
                // Disabled while nothing is out (an empty set ends at once).
                Some(first) = sending.next() => {
                    // With room for more once these are recorded, more are
                    // claimed in the recording's turn at the writer.
                    let claim = worth_asking.then_some(claiming);
                    if let Some(claimed) = self.record_and_go_on(first, &mut sending, claim).await {
                        let started = self.start_sends(claimed.messages).await;
                        worth_asking = took_all(started, claimed.room, &mut sending);
                    }
                }
                // With room for more, new messages are claimed as they
                // come.
                () = self.core.outbox_signal.notified(), if claiming.room(sending.len()) > 0 => {
                    worth_asking = true;
                }
                // Retries are claimed as they come due; and while sends
                // are slow to come back the loop still goes round, so its
                // beat tells readiness it is waiting, not stuck.
                () = tokio::time::sleep_until(next_poll) => {
                    next_poll = Instant::now() + poll;
                    worth_asking = true;
                }
                _ = stop.changed() => {}
            }
        }
    }

    /// One pass over up to `delivery.batch_size` due messages: claims them,
    /// sends them all at once and records the results as they finish.
    /// What `run` does continuously, once, for callers that want to know
    /// when a pass is over.
    pub async fn dispatch_due(&self) -> CoreResult<DispatchReport> {
        let mut report = DispatchReport::default();
        if *self.stopping.borrow() {
            return Ok(report);
        }
        let claimed = self
            .claim(self.core.settings.delivery.batch_size as usize)
            .await?;
        let mut sending: FuturesUnordered<_> =
            self.start_sends(claimed).await?.into_iter().collect();
        while let Some(first) = sending.next().await {
            self.record_finished(first, &mut sending, &mut report, None)
                .await?;
        }
        Ok(report)
    }

    /// Claims up to `most` due messages together.
    async fn claim(&self, most: usize) -> CoreResult<Vec<ClaimedMessage>> {
        let now = self.core.clock.now();
        let due = outbox::due(&self.core, now, most as u64).await?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        outbox::claim_batch(&self.core, &due).await
    }

    /// Records `first` together with every other send that has finished by
    /// now, in one transaction: on SQLite each commit is a turn at the one
    /// writer that registers queue for, so sends are recorded a few turns
    /// at a time, not one each (docs/PERFORMANCE.md, session 17).
    ///
    /// While a group is recorded the other sends are not polled, and a send
    /// queued for a pooled connection would keep its place in the pool's
    /// queue, ahead of the recording that waits for it, until the pool's
    /// time-out failed the pass (session 30, with four pooled connections
    /// on SQLite): which is why sends touch no database.
    async fn record_finished<F>(
        &self,
        first: CoreResult<Finished>,
        sending: &mut FuturesUnordered<F>,
        report: &mut DispatchReport,
        claim: Option<ClaimRule>,
    ) -> CoreResult<Option<ClaimedAlong>>
    where
        F: Future<Output = CoreResult<Finished>>,
    {
        let mut finished = vec![first?];
        while let Some(Some(more)) = sending.next().now_or_never() {
            finished.push(more?);
        }
        let room = claim.map_or(0, |claim| claim.room(sending.len()));
        self.record(&finished, report, room).await
    }

    /// `record_finished` for the loop, which goes on after a recording
    /// fails: those sends' leases run out and they are claimed again. Its
    /// counts go to the metrics (`count`); the report is `dispatch_due`'s.
    async fn record_and_go_on<F>(
        &self,
        first: CoreResult<Finished>,
        sending: &mut FuturesUnordered<F>,
        claim: Option<ClaimRule>,
    ) -> Option<ClaimedAlong>
    where
        F: Future<Output = CoreResult<Finished>>,
    {
        let mut report = DispatchReport::default();
        match self
            .record_finished(first, sending, &mut report, claim)
            .await
        {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::error!(error = ?error, "outbox dispatch failed");
                None
            }
        }
    }

    /// Records finished sends in one transaction, then counts and logs
    /// each. With `room`, up to that many due messages are claimed in the
    /// same transaction; they are returned, read after the commit. A due
    /// list that cannot be read only leaves the claim out: a result not
    /// recorded would be sent again once its lease ran out.
    async fn record(
        &self,
        finished: &[Finished],
        report: &mut DispatchReport,
        room: usize,
    ) -> CoreResult<Option<ClaimedAlong>> {
        let outcomes: Vec<SendOutcome<'_>> = finished
            .iter()
            .map(|f| SendOutcome {
                message: &f.message,
                carrier: f.carrier.as_ref(),
                result: &f.result,
            })
            .collect();
        let now = self.core.clock.now();
        let due = if room > 0 {
            outbox::due(&self.core, now, room as u64)
                .await
                .unwrap_or_else(|error| {
                    tracing::error!(error = ?error, "outbox dispatch failed");
                    Vec::new()
                })
        } else {
            Vec::new()
        };
        let (recorded, lease_token) =
            outbox::record_results_and_claim(&self.core, &outcomes, now, &due).await?;
        for (finished, recorded) in finished.iter().zip(recorded) {
            self.count(finished, recorded, report);
        }
        if room == 0 {
            return Ok(None);
        }
        let messages = match lease_token {
            Some(lease_token) => outbox::leased(&self.core, &due, lease_token).await?,
            None => Vec::new(),
        };
        Ok(Some(ClaimedAlong { messages, room }))
    }

    fn count(&self, finished: &Finished, recorded: Recorded, report: &mut DispatchReport) {
        let Finished {
            message,
            carrier,
            result,
            country,
        } = finished;
        let channel = message.channel;
        let (class, failure) = match result {
            SendResult::Failed { class, error } => (Some(class.name()), Some(error.as_str())),
            SendResult::Sent { .. } => (None, None),
        };
        let attempts = message.attempts + 1;
        let metrics = &self.core.metrics;
        let provider = carrier.as_ref().map(|c| c.provider.as_str());
        if let Some(provider) = provider {
            let outcome = match recorded {
                Recorded::Sent => Some(AttemptOutcome::Sent),
                Recorded::Retrying | Recorded::FailedOver => Some(AttemptOutcome::Failed),
                Recorded::Dead => Some(AttemptOutcome::Dead),
                Recorded::LeaseLost => None,
            };
            if let Some(outcome) = outcome {
                metrics.sms_send(provider, country.as_deref(), outcome);
            }
        }
        match recorded {
            Recorded::Sent => {
                report.sent += 1;
                metrics.delivery(channel, AttemptOutcome::Sent);
                tracing::info!(message = %message.id, channel = channel.name(), provider, attempts, "message sent");
            }
            Recorded::Retrying => {
                report.failed += 1;
                metrics.delivery(channel, AttemptOutcome::Failed);
                tracing::warn!(message = %message.id, channel = channel.name(), provider, attempts, class, error = failure, "message send failed; will retry");
            }
            Recorded::FailedOver => {
                report.failed += 1;
                metrics.delivery(channel, AttemptOutcome::Failed);
                let next = carrier.as_ref().and_then(|c| c.failover_to.as_deref());
                tracing::warn!(message = %message.id, channel = channel.name(), provider, next, attempts, class, error = failure, "message send failed; moving to the next SMS provider");
            }
            Recorded::LeaseLost => {
                report.lease_lost += 1;
                tracing::warn!(message = %message.id, channel = channel.name(), "the message was cancelled, or its lease expired and another dispatcher took it over, during the send: its result is not recorded");
            }
            Recorded::Dead => {
                report.dead += 1;
                metrics.delivery(channel, AttemptOutcome::Dead);
                tracing::error!(message = %message.id, channel = channel.name(), provider, attempts, class, error = failure, "message dead-lettered");
            }
        }
    }
}
