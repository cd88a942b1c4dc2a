//! Registers that arrive together are written in one transaction (group
//! commit), with every guarantee of a register written alone. The batch
//! writers are paused while the registers queue, so each test knows
//! exactly which registers are written together.
use std::time::Duration;

use customer_registration::{
    error::CoreError,
    metrics::Snapshot,
    service::{client::ClientPresence, registration as registrations},
    state::Core,
};
use entity::{
    outbox_message, registration,
    states::{OutboxStatus, RegistrationStatus},
};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};

use crate::helpers::{
    PHONE, TestApp, authenticated_host, quota_counts, recipient_scope, register_input,
    spawn_app_with,
};

/// Starts a register for each phone, in this order, while the writers are
/// paused, waits until every one is queued, then lets them be written.
async fn register_together(app: &TestApp, phones: &[&str]) -> Vec<Result<String, CoreError>> {
    let host = authenticated_host(app).await;
    let paused = app.core.register_batches.pause().await.unwrap();
    let mut tasks = Vec::new();
    for (queued, phone) in phones.iter().enumerate() {
        let (core, host, input) = (app.core.clone(), host.clone(), register_input(phone));
        tasks.push(tokio::spawn(async move {
            registrations::register(&core, &host, input, &ClientPresence::always_waiting())
                .await
                .map(|ticket| ticket.phone)
        }));
        wait_until_waiting(&app.core, queued + 1).await;
    }
    drop(paused);
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

async fn wait_until_waiting(core: &Core, registers: usize) {
    for _ in 0..500 {
        if core.register_batches.waiting() == registers {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{registers} registers never queued");
}

/// The registers each transaction wrote, as the batch-size histogram has
/// them: (transactions, registers).
fn batches(app: &TestApp) -> (u64, u64) {
    let text = app.core.metrics.render(&Snapshot::default());
    let read = |name: &str| -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .map(|value| value.trim().parse::<f64>().unwrap() as u64)
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    (
        read("registration_register_batch_size_count "),
        read("registration_register_batch_size_sum "),
    )
}

#[tokio::test]
async fn registers_queued_together_are_written_in_one_transaction() {
    let app = spawn_app_with(|_| {}).await;
    let phones: Vec<String> = (0..12).map(|i| format!("+62812345670{i:02}")).collect();
    let phones: Vec<&str> = phones.iter().map(String::as_str).collect();
    let answers = register_together(&app, &phones).await;
    for (phone, answer) in phones.iter().zip(&answers) {
        assert_eq!(answer.as_ref().unwrap(), phone);
    }
    // Batches are a power of two (a few sizes of each statement): the
    // twelve queued were written eight, then four, together.
    assert_eq!(batches(&app), (2, 12));
    assert_eq!(
        registration::Entity::find()
            .filter(registration::Column::Status.eq(RegistrationStatus::Pending))
            .count(&app.core.db)
            .await
            .unwrap(),
        12
    );
    // Each registration has its SMS and its email, each counted once.
    assert_eq!(
        outbox_message::Entity::find()
            .count(&app.core.db)
            .await
            .unwrap(),
        24
    );
    assert_eq!(quota_counts(&app, "sms:global").await, vec![12]);
    assert_eq!(quota_counts(&app, "email:host:%").await, vec![12]);
    assert_eq!(
        quota_counts(&app, &recipient_scope("sms")).await,
        vec![1; 12]
    );
}

#[tokio::test]
async fn a_batch_a_quota_refuses_in_part_refuses_exactly_the_ones_over_it() {
    let app = spawn_app_with(|s| s.quotas.sms_per_host.limit = 5).await;
    let phones: Vec<String> = (0..8).map(|i| format!("+62812345671{i:02}")).collect();
    let phones: Vec<&str> = phones.iter().map(String::as_str).collect();
    let answers = register_together(&app, &phones).await;
    // Written one by one after the batch was refused, in the order queued.
    for answer in &answers[..5] {
        assert!(answer.is_ok(), "{answer:?}");
    }
    for answer in &answers[5..] {
        assert!(
            matches!(answer, Err(CoreError::SendQuotaExceeded { .. })),
            "{answer:?}"
        );
    }
    // Written one by one: five transactions of one register each (the
    // three refused wrote nothing).
    assert_eq!(batches(&app), (5, 5), "the batch was written one by one");
    assert_eq!(
        registration::Entity::find()
            .count(&app.core.db)
            .await
            .unwrap(),
        5
    );
    assert_eq!(quota_counts(&app, "sms:host:%").await, vec![5]);
    assert_eq!(quota_counts(&app, "email:global").await, vec![5]);
}

/// A batch's transaction reads every register's checks in one statement
/// and answers the ones they refuse, each with the refusal it would hear
/// alone; the others are written together, in the same transaction.
#[tokio::test]
async fn registers_their_checks_refuse_are_answered_and_the_rest_written_together() {
    use chrono::Duration;
    use sea_orm::ActiveValue::Set;
    let app = spawn_app_with(|_| {}).await;
    let customer = "+6281234567401";
    let locked = "+6281234567402";
    let fresh = ["+6281234567403", "+6281234567404"];
    // The customer: registered alone, then confirmed.
    assert!(register_together(&app, &[customer]).await[0].is_ok());
    let code = app.sms_token(customer, 1).await;
    let confirmed = app.confirm(customer, "secret", &code).await;
    assert_eq!(confirmed.status(), reqwest::StatusCode::OK);
    entity::phone_guard::Entity::insert(entity::phone_guard::ActiveModel {
        host_id: Set(app.host_id().await),
        phone: Set(locked.into()),
        consecutive_failures: Set(3),
        locked_until: Set(Some(app.core.clock.now() + Duration::minutes(30))),
    })
    .exec(&app.core.db)
    .await
    .unwrap();
    let before = batches(&app);

    let answers = register_together(&app, &[fresh[0], customer, locked, fresh[1]]).await;
    assert_eq!(answers[0].as_ref().unwrap(), fresh[0]);
    assert!(
        matches!(answers[1], Err(CoreError::UsernameTaken)),
        "{answers:?}"
    );
    assert!(
        matches!(answers[2], Err(CoreError::PhoneLocked { retry_after_seconds }) if retry_after_seconds > 0),
        "{answers:?}"
    );
    assert_eq!(answers[3].as_ref().unwrap(), fresh[1]);
    // One more transaction, which wrote the two admitted registers.
    assert_eq!(batches(&app), (before.0 + 1, before.1 + 2));
    for (phone, registrations) in [(customer, 1), (locked, 0), (fresh[0], 1), (fresh[1], 1)] {
        let written = registration::Entity::find()
            .filter(registration::Column::Phone.eq(phone))
            .count(&app.core.db)
            .await
            .unwrap();
        assert_eq!(written, registrations, "{phone}");
    }
    // Nothing queued or counted for the refused ones.
    assert_eq!(
        outbox_message::Entity::find()
            .count(&app.core.db)
            .await
            .unwrap(),
        6,
        "the customer's first SMS and email, and the two admitted registers'"
    );
    assert_eq!(quota_counts(&app, "sms:global").await, vec![3]);
}

#[tokio::test]
async fn a_later_register_of_the_same_phone_replaces_the_earlier_one_in_its_batch() {
    // Without a cooldown: the later register is allowed and replaces.
    let app = spawn_app_with(|s| s.registration.register_cooldown_seconds = 0).await;
    let first = "+6281234567201";
    let other = "+6281234567202";
    let answers = register_together(&app, &[first, other, first]).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    // The first and the other together, the repeat after them.
    assert_eq!(batches(&app), (2, 3));
    let of_phone = registration::Entity::find()
        .filter(registration::Column::Phone.eq(first))
        .order_by_asc(registration::Column::Id)
        .all(&app.core.db)
        .await
        .unwrap();
    let statuses: Vec<_> = of_phone.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        vec![RegistrationStatus::Superseded, RegistrationStatus::Pending]
    );
    // The replaced registration's messages are not left to go out: each
    // was cancelled, or had already gone before its registration was
    // replaced (the delivery loop runs meanwhile).
    let replaced = outbox_message::Entity::find()
        .filter(outbox_message::Column::RegistrationId.eq(of_phone[0].id))
        .all(&app.core.db)
        .await
        .unwrap();
    assert_eq!(replaced.len(), 2);
    assert!(
        replaced
            .iter()
            .all(|m| matches!(m.status, OutboxStatus::Cancelled | OutboxStatus::Sent)),
        "{replaced:?}"
    );
}

#[tokio::test]
async fn two_registers_of_one_phone_checked_together_the_later_is_refused_by_the_cooldown() {
    // Written one batch after the other (same phone): the later batch's
    // checks see the earlier register and refuse the repeat. Two batch
    // writers side by side (several instances) would both pass the checks;
    // for that case the later insert is refused by the key of one pending
    // registration per phone and its transaction runs again, or on MySQL
    // the cooldown is checked again after the supersede has locked the
    // phone's index range (`tests/instances.rs` races three instances).
    let app = spawn_app_with(|_| {}).await;
    let first = "+6281234567211";
    let other = "+6281234567212";
    let answers = register_together(&app, &[first, other, first]).await;
    assert!(answers[0].is_ok() && answers[1].is_ok(), "{answers:?}");
    assert!(
        matches!(
            answers[2],
            Err(CoreError::RegisterTooSoon { retry_after_seconds }) if retry_after_seconds > 0
        ),
        "{answers:?}"
    );
    let of_phone = registration::Entity::find()
        .filter(registration::Column::Phone.eq(first))
        .all(&app.core.db)
        .await
        .unwrap();
    assert_eq!(of_phone.len(), 1);
    assert_eq!(of_phone[0].status, RegistrationStatus::Pending);
    // Nothing queued for the refused register: the first's SMS and email.
    let messages = outbox_message::Entity::find()
        .filter(outbox_message::Column::RegistrationId.eq(of_phone[0].id))
        .count(&app.core.db)
        .await
        .unwrap();
    assert_eq!(messages, 2);
    let all_messages = outbox_message::Entity::find()
        .count(&app.core.db)
        .await
        .unwrap();
    assert_eq!(all_messages, 4, "two registers, an SMS and an email each");
}

/// Transports run a write to its end on a task of its own, so a register
/// whose client has gone is not dropped: it learns it from the request's
/// `ClientPresence`, and leaves the queue unwritten (no SMS for nobody).
#[tokio::test]
async fn a_register_whose_client_went_away_before_its_batch_leaves_the_queue_unwritten() {
    use customer_registration::metrics::AbandonedOperation;
    let app = spawn_app_with(|_| {}).await;
    let paused = app.core.register_batches.pause().await.unwrap();
    let request = tokio::spawn(
        reqwest::Client::new()
            .post(format!("{}/b2b/customer/register", app.address))
            .bearer_auth(&app.token)
            .json(&crate::helpers::register_body(PHONE))
            .send(),
    );
    wait_until_waiting(&app.core, 1).await;
    request.abort();
    let _ = request.await;
    crate::helpers::eventually("the register to leave the queue", || async {
        (app.core.register_batches.waiting() == 0).then_some(())
    })
    .await;
    assert_eq!(
        app.core
            .metrics
            .requests_abandoned(AbandonedOperation::Register),
        1
    );
    drop(paused);
    let written = || async {
        (
            registration::Entity::find()
                .count(&app.core.db)
                .await
                .unwrap(),
            outbox_message::Entity::find()
                .count(&app.core.db)
                .await
                .unwrap(),
        )
    };
    assert_eq!(written().await, (0, 0), "no registration, no message");
    // Sent again, the same register is written.
    app.register(&crate::helpers::register_body(PHONE)).await;
    assert_eq!(written().await.0, 1);
}

#[tokio::test]
async fn a_register_whose_request_went_away_before_its_batch_is_not_written() {
    let app = spawn_app_with(|_| {}).await;
    let host = authenticated_host(&app).await;
    let paused = app.core.register_batches.pause().await.unwrap();
    let (core, input) = (app.core.clone(), register_input("+6281234567301"));
    let request = tokio::spawn(async move {
        registrations::register(&core, &host, input, &ClientPresence::always_waiting()).await
    });
    wait_until_waiting(&app.core, 1).await;
    request.abort();
    let _ = request.await;
    assert_eq!(app.core.register_batches.waiting(), 0);
    drop(paused);
    // The next register is written alone: nothing else was waiting.
    let answers = register_together(&app, &["+6281234567302"]).await;
    assert!(answers[0].is_ok(), "{answers:?}");
    assert_eq!(batches(&app), (1, 1));
    assert_eq!(
        registration::Entity::find()
            .count(&app.core.db)
            .await
            .unwrap(),
        1
    );
}
