//! Send quotas and destination countries, against SMS pumping.
use chrono::Duration;
use customer_registration::service::{client::ClientPresence, registration as registrations};
use entity::{outbox_message, registration};
use futures::future::join_all;
use reqwest::{StatusCode, header};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::{Value, json};

use crate::helpers::{
    PHONE, TestApp, assert_error, assert_quota_refused, authenticated_host, host_recipient_scope,
    migrate_down_through, quota_counts, recipient_scope, register_body, register_input,
    spawn_app_with,
};

#[tokio::test]
async fn sms_per_phone_quota_refuses_and_queues_nothing() {
    let app = spawn_app_with(|s| {
        s.quotas.sms_per_phone.limit = 2;
        // The test moves the clock past an hour.
        s.auth.access_token_ttl_seconds = 3 * 3600;
    })
    .await;
    app.register(&register_body(PHONE)).await;
    let resend = json!({"username": PHONE, "phone": PHONE});
    app.clock.advance(Duration::seconds(61));
    assert_eq!(
        app.post("/b2b/customer/resend/registration/sms", &resend)
            .await
            .status(),
        StatusCode::OK
    );
    app.clock.advance(Duration::seconds(61));
    let refused = app
        .post("/b2b/customer/resend/registration/sms", &resend)
        .await;
    let retry_after: i64 = refused.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry_after));
    assert_quota_refused(refused, "phone sms quota").await;
    let sms = outbox_message::Entity::find()
        .all(&app.core.db)
        .await
        .unwrap();
    assert_eq!(
        sms.iter()
            .filter(|m| m.channel == entity::states::Channel::Sms)
            .count(),
        2
    );
    let stored = registration::Entity::find()
        .one(&app.core.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.sms_sends, 2, "the refused resend spent nothing");

    // A new window opens the quota again.
    app.clock.advance(Duration::minutes(60));
    assert_eq!(
        app.post("/b2b/customer/resend/registration/sms", &resend)
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn host_and_global_quotas_count_across_phones() {
    let app = spawn_app_with(|s| {
        s.quotas.sms_per_host.limit = 2;
        s.quotas.sms_global.limit = 3;
    })
    .await;
    app.register(&register_body("+6281234567801")).await;
    app.register(&register_body("+6281234567802")).await;
    let refused = app
        .post("/b2b/customer/register", &register_body("+6281234567803"))
        .await;
    assert_quota_refused(refused, "host").await;
    assert_eq!(
        registration::Entity::find()
            .count(&app.core.db)
            .await
            .unwrap(),
        2,
        "nothing stored"
    );

    let other = app.new_host_token("host-b").await;
    let response = app
        .post_as(
            &other,
            "/b2b/customer/register",
            &register_body("+6281234567803"),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let refused = app
        .post_as(
            &other,
            "/b2b/customer/register",
            &register_body("+6281234567804"),
        )
        .await;
    assert_quota_refused(refused, "global").await;
}

#[tokio::test]
async fn email_quota_rolls_back_the_whole_registration() {
    let app = spawn_app_with(|s| s.quotas.email_per_address.limit = 1).await;
    let mut first = register_body("+6281234567801");
    first["email"] = json!("shared@example.com");
    app.register(&first).await;
    let mut second = register_body("+6281234567802");
    second["email"] = json!("Shared@Example.com");
    let refused = app.post("/b2b/customer/register", &second).await;
    assert_quota_refused(refused, "email").await;
    assert_eq!(
        outbox_message::Entity::find()
            .count(&app.core.db)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        registration::Entity::find()
            .count(&app.core.db)
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn only_allowed_countries_receive_sms() {
    let app = spawn_app_with(|_| {}).await;
    let mut us = register_body("+1 650-253-0000");
    us["countryId"] = json!("US");
    us["email"] = json!("us@example.com");
    let refused = app.post("/b2b/customer/register", &us).await;
    let body = assert_error(refused, StatusCode::BAD_REQUEST, "VALIDATION_FAILED").await;
    assert_eq!(body["details"][0]["field"], "phone");
    assert_eq!(body["details"][0]["code"], "country_not_allowed");

    let open =
        spawn_app_with(|s| s.quotas.allowed_countries = vec!["ID".into(), "US".into()]).await;
    let ticket = open.register(&us).await;
    assert_eq!(ticket["phone"], "+16502530000");
}

/// Sends `count` registers at once, each for its own phone, and returns the
/// statuses and the bodies of the refused ones.
async fn register_at_once(app: &TestApp, count: usize) -> (usize, Vec<Value>) {
    let requests = (0..count).map(|i| async move {
        app.post(
            "/b2b/customer/register",
            &register_body(&format!("+62812345678{i:02}")),
        )
        .await
    });
    let mut accepted = 0;
    let mut refused = Vec::new();
    for response in join_all(requests).await {
        if response.status() == StatusCode::OK {
            accepted += 1;
        } else {
            refused.push(
                assert_error(
                    response,
                    StatusCode::TOO_MANY_REQUESTS,
                    "SEND_QUOTA_EXCEEDED",
                )
                .await,
            );
        }
    }
    (accepted, refused)
}

#[tokio::test]
async fn concurrent_registers_at_a_host_limit_let_exactly_that_many_through() {
    let app = spawn_app_with(|s| s.quotas.sms_per_host.limit = 5).await;
    let (accepted, refused) = register_at_once(&app, 12).await;
    assert_eq!(accepted, 5, "{refused:?}");
    for body in &refused {
        assert!(
            body["message"].as_str().unwrap().contains("host sms quota"),
            "{body}"
        );
    }
    assert_eq!(
        registration::Entity::find()
            .count(&app.core.db)
            .await
            .unwrap(),
        5
    );
    // The refused registers took their counts back with them.
    assert_eq!(quota_counts(&app, "sms:host:%").await, vec![5]);
    assert_eq!(quota_counts(&app, "sms:global").await, vec![5]);
}

#[tokio::test]
async fn concurrent_registers_at_a_global_email_limit_let_exactly_that_many_through() {
    let app = spawn_app_with(|s| s.quotas.email_global.limit = 4).await;
    let (accepted, refused) = register_at_once(&app, 10).await;
    assert_eq!(accepted, 4, "{refused:?}");
    for body in &refused {
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("global email quota"),
            "{body}"
        );
    }
    assert_eq!(
        registration::Entity::find()
            .count(&app.core.db)
            .await
            .unwrap(),
        4
    );
    assert_eq!(quota_counts(&app, "email:global").await, vec![4]);
    assert_eq!(quota_counts(&app, "sms:global").await, vec![4]);
}

#[tokio::test]
async fn the_first_scope_over_its_limit_in_order_is_the_one_reported() {
    let app = spawn_app_with(|s| {
        s.quotas.sms_per_phone.limit = 1;
        s.quotas.sms_per_host_phone.limit = 1;
        s.quotas.sms_per_host.limit = 1;
        s.quotas.sms_global.limit = 1;
        s.registration.register_cooldown_seconds = 0;
    })
    .await;
    app.register(&register_body(PHONE)).await;
    // Every SMS scope is now over its limit for the phone: the recipient's
    // is reported.
    let refused = app
        .post("/b2b/customer/register", &register_body(PHONE))
        .await;
    let body = assert_quota_refused(refused, "phone sms quota").await;
    assert!(
        !body["message"].as_str().unwrap().contains("host"),
        "{body}"
    );
    // Another phone: the host's.
    let refused = app
        .post("/b2b/customer/register", &register_body("+6281234567801"))
        .await;
    assert_quota_refused(refused, "host sms quota").await;
    // Another host and phone: the global one.
    let other = app.new_host_token("host-b").await;
    let refused = app
        .post_as(
            &other,
            "/b2b/customer/register",
            &register_body("+6281234567802"),
        )
        .await;
    assert_quota_refused(refused, "global sms quota").await;
    // Refusals count nothing.
    for scope in [
        recipient_scope("sms"),
        host_recipient_scope("sms"),
        "sms:host:%".to_owned(),
        "sms:global".to_owned(),
    ] {
        assert_eq!(quota_counts(&app, &scope).await, vec![1], "{scope}");
    }
}

/// The counters of a host and a recipient written before their key moved
/// next to the recipient's (migration m20261205_000002) are the ones
/// counted after it; undone, it puts them back.
#[tokio::test]
async fn counters_keep_counting_across_the_move_of_their_keys() {
    use migration::{Migrator, MigratorTrait};
    let app = spawn_app_with(|s| {
        s.quotas.sms_per_host_phone.limit = 1;
        s.registration.register_cooldown_seconds = 0;
    })
    .await;
    app.register(&register_body(PHONE)).await;
    let hex = "_".repeat(32);
    let old_scope = format!("sms:host-recipient:{hex}:{hex}");
    migrate_down_through(
        &app.core.db,
        "m20261205_000002_recipient_quota_scopes_side_by_side",
    )
    .await;
    assert_eq!(quota_counts(&app, &old_scope).await, vec![1]);
    // Undoing the allowances (m20261206_000001) on the way folded the
    // host's counting rows back into its one row.
    assert_eq!(quota_counts(&app, "sms:host:%").await, vec![1]);
    assert!(quota_counts(&app, "%#%").await.is_empty());
    assert!(
        quota_counts(&app, &host_recipient_scope("sms"))
            .await
            .is_empty()
    );
    assert_eq!(quota_counts(&app, &recipient_scope("sms")).await, vec![1]);

    Migrator::up(&app.core.db, None).await.unwrap();
    assert!(quota_counts(&app, &old_scope).await.is_empty());
    assert_eq!(
        quota_counts(&app, &host_recipient_scope("sms")).await,
        vec![1]
    );
    assert_eq!(quota_counts(&app, &recipient_scope("sms")).await, vec![1]);
    // The moved counter is the one read: the phone's second SMS from this
    // host is over the quota of one.
    let refused = app
        .post("/b2b/customer/register", &register_body(PHONE))
        .await;
    assert_quota_refused(refused, "host-phone sms quota").await;
}

#[tokio::test]
async fn a_switched_off_quota_is_not_counted() {
    let app = spawn_app_with(|s| {
        s.quotas.sms_per_phone.limit = 0;
        s.quotas.sms_global.limit = 0;
        s.quotas.email_per_host.limit = 0;
    })
    .await;
    app.register(&register_body(PHONE)).await;
    assert!(quota_counts(&app, &recipient_scope("sms")).await.is_empty());
    assert!(quota_counts(&app, "sms:global").await.is_empty());
    assert!(quota_counts(&app, "email:host:%").await.is_empty());
    assert_eq!(
        quota_counts(&app, &host_recipient_scope("sms")).await,
        vec![1]
    );
    assert_eq!(quota_counts(&app, "sms:host:%").await, vec![1]);
    assert_eq!(quota_counts(&app, &recipient_scope("email")).await, vec![1]);
    assert_eq!(quota_counts(&app, "email:global").await, vec![1]);
}

/// With no send quota on there is no count for the held inserts to go
/// with (`WriteTxn::hold`): they are sent on their own, and every row a
/// register and a resend write is there.
#[tokio::test]
async fn with_every_send_quota_off_registers_and_resends_write_everything() {
    let app = spawn_app_with(|s| {
        let q = &mut s.quotas;
        for quota in [
            &mut q.sms_per_phone,
            &mut q.sms_per_host_phone,
            &mut q.sms_per_host,
            &mut q.sms_global,
            &mut q.email_per_address,
            &mut q.email_per_host_address,
            &mut q.email_per_host,
            &mut q.email_global,
        ] {
            quota.limit = 0;
        }
        s.registration.resend_cooldown_seconds = 0;
    })
    .await;
    app.register(&register_body(PHONE)).await;
    let first = app.sms_token(PHONE, 1).await;
    let response = app
        .post(
            "/b2b/customer/resend/registration/sms",
            &json!({"username": PHONE, "phone": "081234567890"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    // Two SMS, each with its own code, and the completion email with its
    // link, all delivered; the resent code is the one that works.
    let resent = app.sms_token(PHONE, 2).await;
    assert_ne!(resent, first);
    let link = app.completion_link_path().await;
    assert_eq!(app.get(&link).await.status(), StatusCode::OK);
    for scope in ["sms:%", "email:%"] {
        assert!(quota_counts(&app, scope).await.is_empty(), "{scope}");
    }
    let confirmed = app.confirm(PHONE, "secret", &resent).await;
    assert_eq!(confirmed.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_register_with_email_takes_few_statements() {
    let app = spawn_app_with(|s| {
        s.delivery.poll_interval_ms = 3_600_000;
        // Request limits are counted in memory and synced in the background
        // (`request_limits`), which would interleave its statements.
        s.quotas.register_per_host.limit = 0;
    })
    .await;
    let host = authenticated_host(&app).await;
    app.outbox_drained().await;
    // The count includes whatever the service's background tasks (the
    // delivery loop, its housekeeping) run meanwhile; they only ever add,
    // so the fewest over three registers is the register's own. Each
    // starts once the last one's messages are delivered: otherwise every
    // register after the first overlaps that delivery (a CI run on MariaDB
    // counted 11 at best).
    let mut statements = u64::MAX;
    for phone in ["+6281234567890", "+6281234567891", "+6281234567892"] {
        app.outbox_drained().await;
        let before = app.core.metrics.db_statements();
        registrations::register(
            &app.core,
            &host,
            register_input(phone),
            &ClientPresence::always_waiting(),
        )
        .await
        .unwrap();
        statements = statements.min(app.core.metrics.db_statements() - before);
    }
    // The checks 1 (the phone lock, username, email, last register, a
    // pending registration to replace and webhook endpoint in one
    // statement; the account group is read only until this instance has
    // found it, by the first register), then the registration, code,
    // link, the SMS and the email in one insert, and last all eight quota
    // counters in one statement: 6. A phone with no pending registration
    // is neither superseded nor its cooldown checked again (2 more, until
    // session 35), where the database keeps one pending registration per
    // phone as a key (on MySQL since session 40; it superseded always
    // before, 3 statements more). PostgreSQL sends the inserts as `WITH`
    // clauses of the counters' statement, SQLite as one text of several
    // statements with it (`db::together`): 2. MySQL, without RETURNING,
    // reads the counters back: 7. One statement per counter and per
    // message, they were 21 and 31 in all.
    let expected = match app.core.db.get_database_backend() {
        sea_orm::DbBackend::MySql => 7,
        _ => 2,
    };
    assert_eq!(statements, expected);
}
