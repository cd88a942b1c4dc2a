//! Abuse the service the way the hardening issue found it open: cancelled
//! hashes, guesses, codes at rest, floods from one host, disabled hosts,
//! long addresses.
use std::{net::TcpListener, time::Duration as StdDuration};

use chrono::Duration;
use customer_registration::{
    config::{EmailTransportKind, Settings, SmsTransportKind, SmtpTls},
    error::{CoreError, LimitedOperation},
    metrics::AbandonedOperation,
    service::{hosts, request_limits},
};
use entity::{
    delivery_attempt, idempotency_record, outbox_message, registration,
    states::{AttemptOutcome, Channel, OutboxStatus},
};
use futures::StreamExt;
use reqwest::{StatusCode, header};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect};
use serde_json::{Value, json};

use crate::helpers::{
    PHONE, assert_error, assert_quota_refused, eventually, md5_upper, register_body, spawn_app,
    spawn_app_with,
};

/// Transports pointed at a closed port: every message stays queued.
fn unreachable_transports(settings: &mut Settings) {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    settings.delivery.sms.transport = SmsTransportKind::Webhook;
    settings.delivery.sms.webhook.url = format!("http://127.0.0.1:{port}/sms");
    settings.delivery.email.transport = EmailTransportKind::Smtp;
    settings.delivery.email.smtp.host = "127.0.0.1".into();
    settings.delivery.email.smtp.port = port;
    settings.delivery.email.smtp.tls = SmtpTls::None;
}

#[tokio::test]
async fn confirms_cut_off_mid_hash_stay_within_the_hashing_bound() {
    let app = spawn_app_with(|s| {
        s.limits.max_concurrent_hashes = 1;
        s.limits.max_queued_hashes = 4;
    })
    .await;
    app.register(&register_body(PHONE)).await;
    let token = app.sms_token(PHONE, 1).await;
    let body = json!({"username": PHONE, "password": md5_upper("pw"), "token": token});
    let url = format!("{}/b2b/customer/register/confirm", app.address);
    // Cut off at several points, so that some requests reach the hash and
    // give up before it ends, whatever the database's speed.
    for cut_off_ms in [25, 50, 100, 200] {
        let impatient = reqwest::Client::builder()
            .timeout(StdDuration::from_millis(cut_off_ms))
            .build()
            .unwrap();
        futures::stream::iter(0..500)
            .for_each_concurrent(20, |_| {
                let request = impatient.post(&url).bearer_auth(&app.token).json(&body);
                async move {
                    let _ = request.send().await;
                }
            })
            .await;
    }
    // However many requests were abandoned, one hash at a time ran.
    assert_eq!(app.core.hashing.most_at_once(), 1);
    // And the service answers normally afterwards (a request that outran
    // its cut-off may have completed the first registration).
    let other = "+6281298765432";
    app.register(&register_body(other)).await;
    let other_token = app.sms_token(other, 1).await;
    eventually("a confirm after the storm", || async {
        let response = app.confirm(other, "pw", &other_token).await;
        (response.status() == StatusCode::OK).then_some(())
    })
    .await;
    assert_eq!(app.core.hashing.in_progress(), 0);
}

#[tokio::test]
async fn a_confirm_beyond_the_hashing_queue_is_refused_before_its_code_is_checked() {
    let app = spawn_app_with(|s| {
        s.limits.max_concurrent_hashes = 1;
        s.limits.max_queued_hashes = 0;
    })
    .await;
    app.register(&register_body(PHONE)).await;
    let token = app.sms_token(PHONE, 1).await;
    // Another confirm holds the only place in the hashing queue.
    let held = app.core.hashing.admit().unwrap();
    for code in [crate::confirm::wrong(&token), token.clone()] {
        let response = app.confirm(PHONE, "pw", &code).await;
        assert_eq!(
            response
                .headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.to_str().unwrap().to_owned()),
            Some("1".to_owned())
        );
        assert_error(response, StatusCode::SERVICE_UNAVAILABLE, "SERVER_BUSY").await;
    }
    let row = registration::Entity::find()
        .one(&app.core.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.failed_attempts, 0,
        "a refused confirm checks no code, so the wrong one is not counted"
    );
    drop(held);
    assert_eq!(
        app.confirm(PHONE, "pw", &token).await.status(),
        StatusCode::OK,
        "the code is still good once there is room"
    );
}

#[tokio::test]
async fn a_right_code_after_wrong_ones_gives_its_attempt_back() {
    let app = spawn_app().await;
    app.register(&register_body(PHONE)).await;
    let token = app.sms_token(PHONE, 1).await;
    let mut wrong = token.clone();
    wrong.replace_range(3..4, if &token[3..4] == "1" { "2" } else { "1" });
    for remaining in (1..=4).rev() {
        let body = assert_error(
            app.confirm(PHONE, "pw", &wrong).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "TOKEN_INVALID",
        )
        .await;
        assert_eq!(body["attemptsRemaining"], remaining);
    }
    assert_eq!(
        app.confirm(PHONE, "pw", &token).await.status(),
        StatusCode::OK,
        "the last attempt is taken, compared and given back"
    );
    let row = registration::Entity::find()
        .one(&app.core.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.failed_attempts, 4,
        "exactly the wrong codes are counted"
    );
}

#[tokio::test]
async fn queued_codes_and_links_are_sealed_and_withdrawn_when_replaced() {
    let app = spawn_app_with(unreachable_transports).await;
    app.register(&register_body(PHONE)).await;
    let rows = outbox_message::Entity::find()
        .all(&app.core.db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        let body = row.body.as_deref().unwrap();
        assert!(body.starts_with("v1."), "{body}");
        assert!(
            !body.contains("/complete/") && !body.contains("code"),
            "{body}"
        );
        if let Some(html) = &row.html_body {
            assert!(html.starts_with("v1."));
        }
    }
    // A resend replaces the code: the queued SMS with the old one is withdrawn.
    app.clock.advance(Duration::seconds(61));
    let resent = app
        .post(
            "/b2b/customer/resend/registration/sms",
            &json!({"username": PHONE, "phone": PHONE}),
        )
        .await;
    assert_eq!(resent.status(), StatusCode::OK);
    let sms = rows.iter().find(|r| r.channel == Channel::Sms).unwrap();
    let first_sms = outbox_message::Entity::find_by_id(sms.id)
        .one(&app.core.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first_sms.status, OutboxStatus::Cancelled);
    assert_eq!(first_sms.body, None);
    let attempts = delivery_attempt::Entity::find()
        .filter(delivery_attempt::Column::MessageId.eq(first_sms.id))
        .filter(delivery_attempt::Column::Outcome.eq(AttemptOutcome::Cancelled))
        .all(&app.core.db)
        .await
        .unwrap();
    assert_eq!(attempts.len(), 1);
    assert!(attempts[0].error.as_deref().unwrap().contains("replaced"));

    // A new registration replaces the old one: everything it queued goes.
    app.clock.advance(Duration::seconds(61));
    app.register(&register_body(PHONE)).await;
    let pending = outbox_message::Entity::find()
        .filter(outbox_message::Column::Status.eq(OutboxStatus::Pending))
        .all(&app.core.db)
        .await
        .unwrap();
    assert_eq!(
        pending.len(),
        2,
        "only the new registration's SMS and email"
    );
}

#[tokio::test]
async fn a_disabled_hosts_links_stop_working_and_its_queue_is_cancelled() {
    let app = spawn_app().await;
    app.register(&register_body(PHONE)).await;
    let link = app.completion_link_path().await;
    let open = app
        .client
        .get(format!("{}{link}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), StatusCode::OK);
    hosts::disable_host(&app.core, "host-a").await.unwrap();
    let closed = app
        .client
        .get(format!("{}{link}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), StatusCode::NOT_FOUND);

    let queued = spawn_app_with(unreachable_transports).await;
    queued.register(&register_body(PHONE)).await;
    let cancelled = hosts::disable_host(&queued.core, "host-a").await.unwrap();
    assert_eq!(cancelled, 2);
    let rows = outbox_message::Entity::find()
        .all(&queued.core.db)
        .await
        .unwrap();
    assert!(
        rows.iter().all(|r| r.status == OutboxStatus::Cancelled
            && r.body.is_none()
            && r.html_body.is_none())
    );
    let timeline = delivery_attempt::Entity::find()
        .filter(delivery_attempt::Column::Outcome.eq(AttemptOutcome::Cancelled))
        .all(&queued.core.db)
        .await
        .unwrap();
    assert_eq!(timeline.len(), 2);
    assert!(
        timeline[0]
            .error
            .as_deref()
            .unwrap()
            .contains("host was disabled")
    );
}

#[tokio::test]
async fn verify_and_register_are_rate_limited_per_host() {
    let app = spawn_app_with(|s| {
        s.quotas.verify_per_host.limit = 3;
        s.quotas.register_per_host.limit = 1;
    })
    .await;
    let verify = |token: String| {
        let app = &app;
        async move {
            app.client
                .get(format!(
                    "{}/b2b/customer/auth/verifyUsername?username={PHONE}",
                    app.address
                ))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    for _ in 0..2 {
        assert_eq!(verify(app.token.clone()).await.status(), StatusCode::OK);
    }
    // Every aliased field counts: the third passes, the fourth is refused.
    let (_, body) = app
        .graphql(
            "{ a: verifyEmail(email: \"a@example.com\") { exists } b: verifyUsername(username: \"081234567890\") { exists } }",
            json!({}),
        )
        .await;
    // The fields run concurrently: either may get the last allowance.
    let answered = ["a", "b"]
        .iter()
        .filter(|f| body["data"][**f]["exists"] == false)
        .count();
    assert_eq!(answered, 1, "{body}");
    assert_eq!(body["errors"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "RATE_LIMITED");
    let refused = verify(app.token.clone()).await;
    let retry_after: u64 = refused.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_error(refused, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;
    // Another host has its own allowance.
    let other = app.new_host_token("host-b").await;
    assert_eq!(verify(other).await.status(), StatusCode::OK);
    // The window passes.
    app.clock.advance(Duration::minutes(1));
    assert_eq!(verify(app.token.clone()).await.status(), StatusCode::OK);

    app.register(&register_body(PHONE)).await;
    let second = app
        .post("/b2b/customer/register", &register_body("+6281298765432"))
        .await;
    assert_error(second, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;
}

#[tokio::test]
async fn request_counts_are_shared_between_instances_through_the_database() {
    let app = spawn_app_with(|s| s.quotas.verify_per_host.limit = 5).await;
    let verify = || async {
        app.get(&format!(
            "/b2b/customer/auth/verifyUsername?username={PHONE}"
        ))
        .await
        .status()
    };
    for _ in 0..3 {
        assert_eq!(verify().await, StatusCode::OK);
    }
    // Each instance counts in memory and adds its counts to the database
    // every 100 ms.
    let stored = || async {
        entity::send_quota::Entity::find()
            .filter(entity::send_quota::Column::Scope.starts_with("verify:host:"))
            .all(&app.core.db)
            .await
            .unwrap()
            .iter()
            .map(|row| row.used)
            .sum::<i32>()
    };
    eventually("three requests stored", || async {
        (stored().await == 3).then_some(())
    })
    .await;

    // A second instance on the same database, with a limiter of its own,
    // starts from what the first stored: two more, then no more.
    let other = app.core.another_instance();
    let host = hosts::authenticate(&other, Some(&format!("Bearer {}", app.token)))
        .await
        .unwrap();
    for _ in 0..2 {
        request_limits::admit(&other, &host, LimitedOperation::Verify)
            .await
            .unwrap();
    }
    let refused = request_limits::admit(&other, &host, LimitedOperation::Verify).await;
    assert!(
        matches!(refused, Err(CoreError::RateLimited { .. })),
        "{refused:?}"
    );
    // The first instance learns the total with its own next sync; what it
    // admits before that is the overshoot the design allows (what an
    // instance admits within one interval). Then it refuses, and every
    // request it admitted is stored.
    request_limits::sync(&other).await.unwrap();
    assert_eq!(stored().await, 5);
    let mut overshoot = 0;
    while verify().await == StatusCode::OK {
        overshoot += 1;
        assert!(
            overshoot <= 2,
            "more than the first instance's own allowance"
        );
    }
    eventually("the overshoot stored too", || async {
        (stored().await == 5 + overshoot).then_some(())
    })
    .await;
}

#[tokio::test]
async fn one_host_cannot_use_up_a_phone_for_the_others() {
    let app = spawn_app_with(|s| {
        s.quotas.sms_per_host_phone.limit = 2;
        s.quotas.sms_per_phone.limit = 4;
    })
    .await;
    // Re-registering at once is refused: it would only flood the customer.
    app.register(&register_body(PHONE)).await;
    let too_soon = app
        .post("/b2b/customer/register", &register_body(PHONE))
        .await;
    assert!(too_soon.headers().contains_key(header::RETRY_AFTER));
    assert_error(too_soon, StatusCode::TOO_MANY_REQUESTS, "REGISTER_TOO_SOON").await;
    app.clock.advance(Duration::seconds(61));
    app.register(&register_body(PHONE)).await;
    app.clock.advance(Duration::seconds(61));
    let third = app
        .post("/b2b/customer/register", &register_body(PHONE))
        .await;
    assert_quota_refused(third, "host-phone").await;

    let other = app.new_host_token("host-b").await;
    let response = app
        .post_as(&other, "/b2b/customer/register", &register_body(PHONE))
        .await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "host-b still reaches the customer"
    );
}

#[tokio::test]
async fn the_longest_valid_email_registers_on_every_database() {
    let app = spawn_app().await;
    // 64-character local part, 254 characters in all (RFC 5321's limits).
    let local = "a".repeat(64);
    let domain = format!(
        "{}.{}.{}.example.com",
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(49)
    );
    let email = format!("{local}@{domain}");
    assert_eq!(email.len(), 254);
    let mut body = register_body(PHONE);
    body["email"] = json!(email);
    let response = app.post("/b2b/customer/register", &body).await;
    let status = response.status();
    let ticket: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{ticket}");
    app.clock.advance(Duration::seconds(61));
    let resent = app
        .post(
            "/b2b/customer/resend/registration/email",
            &json!({"username": PHONE, "phone": PHONE}),
        )
        .await;
    assert_eq!(resent.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_phone_locked_by_one_hosts_failures_stays_open_to_others() {
    let app = spawn_app_with(|s| {
        s.registration.max_wrong_codes = 2;
        s.registration.phone_lock_threshold = 2;
    })
    .await;
    app.register(&register_body(PHONE)).await;
    for _ in 0..2 {
        let response = app.confirm(PHONE, "pw", "ZZZ000000").await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    app.clock.advance(Duration::seconds(61));
    let refused = app
        .post("/b2b/customer/register", &register_body(PHONE))
        .await;
    assert_error(refused, StatusCode::LOCKED, "PHONE_LOCKED").await;

    let other = app.new_host_token("host-b").await;
    let response = app
        .post_as(&other, "/b2b/customer/register", &register_body(PHONE))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_request_the_client_abandons_still_runs_to_its_end() {
    let app = spawn_app().await;
    app.register(&register_body(PHONE)).await;
    let token = app.sms_token(PHONE, 1).await;
    abandon_confirm_and_see_it_complete(&app, |request| {
        request
            .post(format!("{}/b2b/customer/register/confirm", app.address))
            .json(&json!({"username": PHONE, "password": md5_upper("pw"), "token": token}))
    })
    .await;
}

/// GraphQL runs queries in place, but a mutation on a task of its own.
#[tokio::test]
async fn a_graphql_mutation_the_client_abandons_still_runs_to_its_end() {
    let app = spawn_app().await;
    app.register(&register_body(PHONE)).await;
    let token = app.sms_token(PHONE, 1).await;
    abandon_confirm_and_see_it_complete(&app, |request| {
        request.post(format!("{}/graphql", app.address)).json(&json!({
            "query": "mutation($input: ConfirmRegistrationInput!) { confirmRegistration(input: $input) { id } }",
            "variables": {"input": {"username": PHONE, "password": md5_upper("pw"), "token": token}},
        }))
    })
    .await;
}

/// A confirm with the right code writes nothing before its hash, so one
/// whose client leaves while it waits for a hashing slot gives its place
/// back instead of hashing for nobody (issue 12: a load generator's
/// abandoned confirms held the queue full into the next run), and its code
/// stays good.
#[tokio::test]
async fn rest_confirms_abandoned_while_waiting_to_hash_give_their_places_back() {
    abandon_confirms_waiting_to_hash(|client, address, body| {
        client
            .post(format!("{address}/b2b/customer/register/confirm"))
            .json(&body)
    })
    .await;
}

/// With `Idempotency-Key` the request runs on a task of its own from the
/// start, and its key is claimed before the confirm waits: given up, the
/// confirm's answer says to retry, so the key is let go and a retry with
/// the same key confirms (the helper retries with the same key).
#[tokio::test]
async fn confirms_with_an_idempotency_key_abandoned_while_waiting_keep_their_key_free() {
    abandon_confirms_waiting_to_hash(|client, address, body| {
        let key = format!("confirm-{}", body["username"].as_str().unwrap());
        client
            .post(format!("{address}/b2b/customer/register/confirm"))
            .header("Idempotency-Key", key)
            .json(&body)
    })
    .await;
}

#[tokio::test]
async fn graphql_confirms_abandoned_while_waiting_to_hash_give_their_places_back() {
    abandon_confirms_waiting_to_hash(|client, address, body| {
        client.post(format!("{address}/graphql")).json(&json!({
            "query": "mutation($input: ConfirmRegistrationInput!) { confirmRegistration(input: $input) { id } }",
            "variables": {"input": body},
        }))
    })
    .await;
}

async fn abandon_confirms_waiting_to_hash(
    confirm: impl Fn(&reqwest::Client, &str, Value) -> reqwest::RequestBuilder,
) {
    const CONFIRMS: usize = 16;
    let app = spawn_app_with(|s| {
        s.limits.max_concurrent_hashes = 1;
        s.limits.max_queued_hashes = 32;
    })
    .await;
    let mut bodies = Vec::new();
    for i in 0..CONFIRMS {
        let phone = format!("+628129876{i:04}");
        app.register(&register_body(&phone)).await;
        let token = app.sms_token(&phone, 1).await;
        bodies.push(json!({"username": phone, "password": md5_upper("pw"), "token": token}));
    }
    let client = reqwest::Client::new();
    let requests: Vec<_> = bodies
        .iter()
        .map(|body| {
            let request = confirm(&client, &app.address, body.clone()).bearer_auth(&app.token);
            tokio::spawn(request.send())
        })
        .collect();
    // One hashes at a time; once most wait for the slot, every client
    // leaves. (Not all need be waiting: with `Idempotency-Key` each claims
    // its key first, and the first hashes meanwhile. One that is admitted
    // after its client left gives up at once.)
    let deadline = std::time::Instant::now() + StdDuration::from_secs(10);
    while app.core.hashing.waiting() < CONFIRMS - 6 {
        assert!(
            std::time::Instant::now() < deadline,
            "the confirms never queued"
        );
        tokio::time::sleep(StdDuration::from_millis(1)).await;
    }
    for request in &requests {
        request.abort();
    }
    // Each confirm ends given up or completed: hashes already running when
    // the clients left ran to their end, with the transaction after them.
    // A request ends after its confirm: with `Idempotency-Key` it then
    // stores the answer or lets the key go, and a retry before that is
    // rightly told the first is still in progress.
    let completed = eventually("every confirm to end", || async {
        let keys_held = idempotency_record::Entity::find()
            .filter(idempotency_record::Column::ResponseStatus.is_null())
            .count(&app.core.db)
            .await
            .unwrap();
        let completed = registration::Entity::find()
            .filter(registration::Column::CompletedAt.is_not_null())
            .all(&app.core.db)
            .await
            .unwrap()
            .len();
        let abandoned = usize::try_from(
            app.core
                .metrics
                .requests_abandoned(AbandonedOperation::Confirm),
        )
        .unwrap();
        (completed + abandoned == CONFIRMS && keys_held == 0).then_some(completed)
    })
    .await;
    assert_eq!(app.core.hashing.waiting(), 0);
    // A confirm still waiting would have hashed too if nobody had noticed.
    assert!(
        completed <= CONFIRMS / 2,
        "{completed} of {CONFIRMS} abandoned confirms hashed and completed"
    );
    // Nothing was counted against the others: their codes still confirm.
    let pending = registration::Entity::find()
        .filter(registration::Column::CompletedAt.is_null())
        .all(&app.core.db)
        .await
        .unwrap();
    assert_eq!(pending.len(), CONFIRMS - completed);
    for row in pending {
        assert_eq!(row.failed_attempts, 0);
        let body = bodies
            .iter()
            .find(|b| b["username"] == row.phone.as_str())
            .unwrap();
        let response = confirm(&client, &app.address, body.clone())
            .bearer_auth(&app.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{row:?}");
    }
}

async fn abandon_confirm_and_see_it_complete(
    app: &crate::helpers::TestApp,
    confirm: impl FnOnce(&reqwest::Client) -> reqwest::RequestBuilder,
) {
    // The confirm cannot end before its client leaves: its writes wait for
    // this transaction, for this process's writer turn on SQLite and for
    // the registration's row lock on a server.
    let holding = customer_registration::service::write::begin(&app.core)
        .await
        .unwrap();
    registration::Entity::find()
        .lock_exclusive()
        .one(&*holding)
        .await
        .unwrap();
    let request = confirm(&reqwest::Client::new()).bearer_auth(&app.token);
    let in_flight = tokio::spawn(async move { request.send().await });
    // The client leaves once the hash is done and the confirm waits to
    // write. Leaving earlier, while it waits for a hashing slot, rightly
    // stops it unwritten; a fixed client time-out raced that on a loaded
    // machine.
    let hashing = &app.core.hashing;
    eventually("the confirm's hash to finish", || async {
        (hashing.most_at_once() == 1 && hashing.in_progress() == 0 && hashing.waiting() == 0)
            .then_some(())
    })
    .await;
    in_flight.abort();
    assert!(
        in_flight.await.unwrap_err().is_cancelled(),
        "the client left before an answer"
    );
    customer_registration::service::write::rollback(holding)
        .await
        .unwrap();
    // No transaction was left half-done: the confirm completed.
    eventually("the abandoned confirm to complete", || async {
        let completed = registration::Entity::find()
            .one(&app.core.db)
            .await
            .unwrap()
            .is_some_and(|r| r.completed_at.is_some());
        completed.then_some(())
    })
    .await;
}

/// `/metrics` answers without a token, and counting a backlog reads every
/// waiting message's index entry: a flood of scrapes must not make that
/// read each time.
#[tokio::test]
async fn scrapes_share_a_large_count_of_waiting_messages_for_a_second() {
    use customer_registration::service::health;
    use sea_orm::{ActiveModelTrait, IntoActiveModel};

    let app = spawn_app_with(|s| s.delivery.poll_interval_ms = 3_600_000).await;
    app.register(&register_body(PHONE)).await;
    app.outbox_drained().await;
    request_limits::sync(&app.core).await.unwrap();
    let statements = || app.core.metrics.db_statements();

    // A small count is never reused: the scrape after a drain reads empty.
    let before = statements();
    app.metrics().await;
    app.metrics().await;
    assert_eq!(statements() - before, 2, "two small counts");

    // A backlog: copies of the sent email, due tomorrow so that the
    // delivery loop leaves them alone.
    let sent = outbox_message::Entity::find()
        .filter(outbox_message::Column::Channel.eq(Channel::Email))
        .one(&app.core.db)
        .await
        .unwrap()
        .unwrap();
    let backlog = health::COUNT_KEPT_FROM + 1;
    let tomorrow = app.core.clock.now() + Duration::days(1);
    let copies: Vec<_> = (0..backlog)
        .map(|_| {
            let mut copy = sent.clone();
            copy.id = uuid::Uuid::now_v7();
            copy.status = OutboxStatus::Pending;
            copy.next_attempt_at = tomorrow;
            copy.into_active_model().reset_all()
        })
        .collect();
    for chunk in copies.chunks(100) {
        outbox_message::Entity::insert_many(chunk.to_vec())
            .exec(&app.core.db)
            .await
            .unwrap();
    }
    let depth = format!(r#"registration_outbox_depth{{channel="email"}} {backlog}"#);
    assert!(app.metrics().await.contains(&depth));

    // Within the second: twenty scrapes at once, no count.
    let before = statements();
    let scrapes = futures::future::join_all((0..20).map(|_| app.metrics())).await;
    assert!(scrapes.iter().all(|metrics| metrics.contains(&depth)));
    assert_eq!(statements() - before, 0, "the large count reused");

    // After it: twenty at once wait for one count.
    app.clock
        .advance(Duration::milliseconds(health::COUNT_KEPT_FOR_MS));
    let before = statements();
    let scrapes = futures::future::join_all((0..20).map(|_| app.metrics())).await;
    assert!(scrapes.iter().all(|metrics| metrics.contains(&depth)));
    assert_eq!(statements() - before, 1, "one count for the twenty");
}
