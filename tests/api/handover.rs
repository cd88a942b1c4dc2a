//! Messages queued while this instance's delivery loop runs are written
//! leased to it and sent from memory, with no due list and no claim
//! (`customer_registration::handover`); everything a claim guarantees
//! still holds.
use chrono::Duration;
use customer_registration::{
    clock::Clock,
    delivery::MemoryOutbox,
    service::outbox::{self, CancelReason},
    startup,
};
use entity::{outbox_message, states::OutboxStatus};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use tokio::sync::watch;

use crate::{delivery::Quiet, helpers::PHONE};

const OTHER_PHONE: &str = "+6281234567891";

async fn rows(quiet: &Quiet) -> Vec<outbox_message::Model> {
    outbox_message::Entity::find()
        .order_by_asc(outbox_message::Column::Id)
        .all(&quiet.core.db)
        .await
        .unwrap()
}

/// The message is written leased, so no due list (of this instance or
/// another) takes it; the pass reads it by id and sends it: one statement
/// fewer than a claim, and none at SQLite's writer before the send.
#[tokio::test]
async fn a_message_queued_while_delivery_runs_is_sent_without_a_claim() {
    let quiet = Quiet::new().await;
    let (core, clock) = (&quiet.core, &quiet.clock);
    core.handover.open();
    quiet.register(PHONE).await;
    let queued = rows(&quiet).await;
    assert_eq!(queued.len(), 1);
    let lease_until = queued[0].lease_until.expect("written leased");
    assert!(queued[0].lease_token.is_some());
    assert_eq!(lease_until, clock.now() + core.settings.lease_length());
    assert!(
        outbox::due(core, clock.now(), 10).await.unwrap().is_empty(),
        "no due list takes a message handed over"
    );
    let memory = MemoryOutbox::default();
    let dispatcher = startup::dispatcher(core, &memory).unwrap();
    let before = core.metrics.db_statements();
    let report = dispatcher.dispatch_due().await.unwrap();
    let statements = core.metrics.db_statements() - before;
    assert_eq!(report.sent, 1);
    // The due list for the rest of the batch, the handed-over row by id,
    // the result and the timeline entry: 4 (with a claim, 5).
    assert_eq!(statements, 4);
    let sent = memory.messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].recipient, PHONE);
    let row = &rows(&quiet).await[0];
    assert_eq!(row.status, OutboxStatus::Sent);
    assert!(row.lease_token.is_none() && row.body.is_none());
    assert_eq!(
        dispatcher.dispatch_due().await.unwrap().sent,
        0,
        "sent once"
    );
}

/// Cancelled after it was handed over (a resend, a completed registration,
/// a newer register), a message is left out like one cancelled after a
/// claim, and the rest go.
#[tokio::test]
async fn a_handed_over_message_cancelled_before_its_pass_is_left_out() {
    let quiet = Quiet::new().await;
    let (core, clock) = (&quiet.core, &quiet.clock);
    core.handover.open();
    quiet.register(PHONE).await;
    quiet.register(OTHER_PHONE).await;
    let replaced = entity::registration::Entity::find()
        .filter(entity::registration::Column::Phone.eq(PHONE))
        .one(&core.db)
        .await
        .unwrap()
        .unwrap();
    let cancelled = outbox::cancel_pending(
        &core.db,
        &[replaced.id],
        None,
        CancelReason::Superseded,
        clock.now(),
    )
    .await
    .unwrap();
    assert_eq!(cancelled, 1);
    let memory = MemoryOutbox::default();
    let report = startup::dispatcher(core, &memory)
        .unwrap()
        .dispatch_due()
        .await
        .unwrap();
    assert_eq!(report.sent, 1);
    let sent = memory.messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].recipient, OTHER_PHONE);
    let statuses = rows(&quiet)
        .await
        .into_iter()
        .map(|row| (row.recipient, row.status))
        .collect::<Vec<_>>();
    assert_eq!(
        statuses,
        [
            (PHONE.to_owned(), OutboxStatus::Cancelled),
            (OTHER_PHONE.to_owned(), OutboxStatus::Sent)
        ]
    );
}

/// At most half a batch is handed over, and every pass lists the due
/// messages for the rest: messages already waiting in the database are not
/// held back by new ones, oldest first.
#[tokio::test]
async fn half_of_every_pass_is_kept_for_messages_waiting_in_the_database() {
    let quiet = Quiet::with(|settings| settings.delivery.batch_size = 4).await;
    let (core, clock) = (&quiet.core, &quiet.clock);
    let phone = |i: usize| format!("+62812345678{i:02}");
    // Three queued before the loop ran: waiting in the database.
    for i in 0..3 {
        quiet.register(&phone(i)).await;
        clock.advance(Duration::seconds(1));
    }
    core.handover.open();
    // Three more while it runs: two handed over (half of 4), one free.
    for i in 3..6 {
        quiet.register(&phone(i)).await;
        clock.advance(Duration::seconds(1));
    }
    let leased = rows(&quiet)
        .await
        .into_iter()
        .map(|row| (row.recipient, row.lease_token.is_some()))
        .collect::<Vec<_>>();
    let expected = (0..6)
        .map(|i| (phone(i), i == 3 || i == 4))
        .collect::<Vec<_>>();
    assert_eq!(leased, expected);
    let memory = MemoryOutbox::default();
    let dispatcher = startup::dispatcher(core, &memory).unwrap();
    let before = core.metrics.db_statements();
    let first = dispatcher.dispatch_due().await.unwrap();
    let statements = core.metrics.db_statements() - before;
    assert_eq!(first.sent, 4);
    // The due list, the claim, one read for the claimed and the handed
    // over, the results in one update and the timeline: as many as a pass
    // without a handover (MySQL records each result alone: 8).
    let expected = if core.db.get_database_backend() == sea_orm::DbBackend::MySql {
        8
    } else {
        5
    };
    assert_eq!(statements, expected);
    let mut recipients = memory
        .messages()
        .into_iter()
        .map(|m| m.recipient)
        .collect::<Vec<_>>();
    recipients.sort();
    assert_eq!(
        recipients,
        [phone(0), phone(1), phone(3), phone(4)],
        "the two handed over and the two oldest waiting"
    );
    assert_eq!(dispatcher.dispatch_due().await.unwrap().sent, 2);
    assert!(
        rows(&quiet)
            .await
            .iter()
            .all(|row| row.status == OutboxStatus::Sent)
    );
}

/// A delivery loop that stops gives up the leases of what it was handed
/// and did not send: any instance's due list takes those messages at once,
/// not when the leases lapse.
#[tokio::test]
async fn stopping_delivery_releases_what_it_was_handed() {
    let quiet = Quiet::new().await;
    let (core, clock) = (&quiet.core, &quiet.clock);
    core.handover.open();
    quiet.register(PHONE).await;
    assert!(outbox::due(core, clock.now(), 10).await.unwrap().is_empty());
    let memory = MemoryOutbox::default();
    let (_stop, stopping) = watch::channel(true);
    startup::dispatcher(core, &memory)
        .unwrap()
        .run(stopping)
        .await;
    assert!(memory.messages().is_empty(), "stopped before sending");
    let row = &rows(&quiet).await[0];
    assert_eq!(row.status, OutboxStatus::Pending);
    assert!(row.lease_token.is_none() && row.lease_until.is_none());
    assert_eq!(
        outbox::due(core, clock.now(), 10).await.unwrap(),
        [row.id],
        "free for any instance"
    );
    quiet.register(OTHER_PHONE).await;
    assert!(
        rows(&quiet)
            .await
            .iter()
            .all(|row| row.lease_token.is_none()),
        "nothing is handed over to a stopped loop"
    );
}

/// A message handed over whose lease has too little left for a send (the
/// loop was held up) is not sent from memory: it goes out once, through a
/// due list, when the lease lapses.
#[tokio::test]
async fn a_handed_over_message_whose_lease_ran_short_goes_out_when_it_lapses() {
    let quiet = Quiet::new().await;
    let (core, clock) = (&quiet.core, &quiet.clock);
    core.handover.open();
    quiet.register(PHONE).await;
    let memory = MemoryOutbox::default();
    let dispatcher = startup::dispatcher(core, &memory).unwrap();
    let lease = core.settings.lease_length();
    // Less than a send and its margin left, the lease not yet lapsed.
    clock.advance(lease - core.settings.longest_send() - Duration::seconds(1));
    assert_eq!(dispatcher.dispatch_due().await.unwrap().sent, 0);
    clock.advance(core.settings.longest_send() + Duration::seconds(2));
    assert_eq!(dispatcher.dispatch_due().await.unwrap().sent, 1);
    assert_eq!(memory.messages().len(), 1, "sent once");
    assert_eq!(rows(&quiet).await[0].status, OutboxStatus::Sent);
}
