//! The host's and the global send quotas, counted in a row per counting
//! slot, each spending an allowance the scope's row grants
//! (`service::quotas::allowances`).
use customer_registration::{
    service::{client::ClientPresence, registration as registrations},
    state::Core,
};
use futures::future::join_all;
use reqwest::StatusCode;
use sea_orm::EntityTrait;

use crate::helpers::{
    TestApp, assert_quota_refused, authenticated_host, quota_counts, register_body, register_input,
    spawn_app_with,
};

/// Every row of a host's or the global scope (`scope#N@limit`) counted within its
/// allowance, and each scope granted no more than its limit.
async fn assert_allowances_hold(app: &TestApp, scope_like: &str, limit: i32) {
    use sea_orm::{ColumnTrait, QueryFilter};
    let rows = entity::send_quota::Entity::find()
        .filter(entity::send_quota::Column::Scope.like(scope_like))
        .all(&app.core.db)
        .await
        .unwrap();
    assert!(!rows.is_empty(), "{scope_like}");
    let mut granted_by_scopes = 0;
    let mut granted_to_rows = 0;
    for row in &rows {
        if row.scope.contains('#') {
            assert!(row.used <= row.granted, "{row:?}");
            granted_to_rows += row.granted;
        } else {
            assert!(row.used + row.granted <= limit, "{row:?}");
            granted_by_scopes += row.granted;
        }
    }
    assert_eq!(granted_by_scopes, granted_to_rows, "{rows:?}");
}

/// Allowance another row holds and does not use (another instance's, or a
/// slot's that went quiet) is taken back near the limit: one send at a
/// time, exactly the limit goes through, wherever the allowance was.
#[tokio::test]
async fn a_host_quota_takes_back_allowance_other_rows_hold_near_its_limit() {
    use sea_orm::{ActiveModelTrait, ColumnTrait, IntoActiveModel, QueryFilter, Set};
    let app = spawn_app_with(|s| {
        s.quotas.sms_per_host.limit = 10;
        s.registration.register_cooldown_seconds = 0;
    })
    .await;
    app.register(&register_body("+6281234567800")).await;
    let rows = entity::send_quota::Entity::find()
        .filter(entity::send_quota::Column::Scope.like("sms:host:%#%"))
        .all(&app.core.db)
        .await
        .unwrap();
    let [own] = &rows[..] else {
        panic!("one counting row: {rows:?}")
    };
    assert_eq!(own.used, 1);
    // Hand six of its allowance to another row, which counted two sends
    // and then went quiet.
    let scope = own.scope.rsplit_once('#').unwrap().0.to_owned();
    let mut moved = own.clone().into_active_model();
    moved.granted = Set(own.granted - 6);
    moved.update(&app.core.db).await.unwrap();
    entity::send_quota::ActiveModel {
        scope: Set(format!("{scope}#99")),
        window_start: Set(own.window_start),
        used: Set(2),
        granted: Set(6),
    }
    .insert(&app.core.db)
    .await
    .unwrap();
    assert_eq!(quota_counts(&app, "sms:host:%").await, vec![3]);

    let mut accepted = 0;
    for i in 1..20 {
        let response = app
            .post(
                "/b2b/customer/register",
                &register_body(&format!("+62812345678{i:02}")),
            )
            .await;
        if response.status() != StatusCode::OK {
            assert_quota_refused(response, "host sms quota").await;
            break;
        }
        accepted += 1;
    }
    assert_eq!(accepted, 7);
    assert_eq!(quota_counts(&app, "sms:host:%").await, vec![10]);
    assert_allowances_hold(&app, "sms:host:%", 10).await;
    // The quiet row kept only what it counted.
    let quiet = entity::send_quota::Entity::find()
        .filter(entity::send_quota::Column::Scope.eq(format!("{scope}#99")))
        .one(&app.core.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((quiet.used, quiet.granted), (2, 2));
}

/// Registers the applicants `phones` at once, alternating between the
/// two instances, and returns how many went through; every refusal is
/// the host's SMS quota.
async fn register_at_once_on_two(
    app: &TestApp,
    other: &Core,
    phones: std::ops::Range<usize>,
) -> usize {
    let host = authenticated_host(app).await;
    let registers = phones.map(|i| {
        let core = if i % 2 == 0 { &app.core } else { other };
        let host = &host;
        async move {
            registrations::register(
                core,
                host,
                register_input(&format!("+628123456{i:04}")),
                &ClientPresence::always_waiting(),
            )
            .await
        }
    });
    let results = join_all(registers).await;
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(refused.to_string().contains("host sms quota"), "{refused}");
    }
    results.iter().filter(|r| r.is_ok()).count()
}

/// With a limit large enough that rows are granted more than they need,
/// registers racing past it over two instances never get past it, and
/// what allowance the racing rows held unused is taken back afterwards:
/// one at a time, the rest of the limit goes through, exactly.
#[tokio::test]
async fn racing_past_a_limit_with_spare_allowances_ends_exactly_at_it() {
    let app = spawn_app_with(|s| {
        s.quotas.sms_per_host.limit = 100;
        // More registers than a host may make a minute by default.
        s.quotas.register_per_host.limit = 0;
    })
    .await;
    let other = app.core.another_instance();
    let racing = register_at_once_on_two(&app, &other, 0..130).await;
    assert!(racing <= 100, "{racing}");
    assert_eq!(
        quota_counts(&app, "sms:host:%").await,
        vec![i32::try_from(racing).unwrap()]
    );
    assert_allowances_hold(&app, "sms:host:%", 100).await;
    let mut one_at_a_time = 0;
    for i in 200..400 {
        if register_at_once_on_two(&app, &other, i..i + 1).await == 0 {
            break;
        }
        one_at_a_time += 1;
    }
    assert_eq!(racing + one_at_a_time, 100, "{racing} racing");
    assert_eq!(quota_counts(&app, "sms:host:%").await, vec![100]);
    assert_allowances_hold(&app, "sms:host:%", 100).await;
}

/// Two instances registering at once, each with its own counting slots:
/// the host's and the global quotas let exactly their limits through, and
/// no row counts past its allowance.
#[tokio::test]
async fn two_instances_registering_at_once_keep_the_shared_quotas_exact() {
    let app = spawn_app_with(|s| {
        s.quotas.sms_per_host.limit = 25;
        s.quotas.email_global.limit = 300;
    })
    .await;
    let other = app.core.another_instance();
    assert_eq!(register_at_once_on_two(&app, &other, 0..60).await, 25);
    assert_eq!(quota_counts(&app, "sms:host:%").await, vec![25]);
    assert_eq!(quota_counts(&app, "email:global").await, vec![25]);
    assert_allowances_hold(&app, "sms:host:%", 25).await;
    assert_allowances_hold(&app, "email:global%", 300).await;
}

/// A limit lowered in the configuration holds from the first send counted
/// under it: the allowance granted under the old limit, unused, is not
/// spent past the new one (an instance restarted with the new settings
/// stands in for every instance).
#[tokio::test]
async fn a_lowered_limit_holds_at_once_whatever_was_granted_under_the_old_one() {
    let app = spawn_app_with(|s| {
        s.quotas.sms_per_host.limit = 1_000;
        s.registration.register_cooldown_seconds = 0;
    })
    .await;
    app.register(&register_body("+6281234567800")).await;
    let granted: i32 = entity::send_quota::Entity::find()
        .all(&app.core.db)
        .await
        .unwrap()
        .iter()
        .filter(|row| row.scope.starts_with("sms:host:") && row.scope.contains('#'))
        .map(|row| row.granted)
        .sum();
    assert!(granted > 3, "granted ahead under the old limit: {granted}");

    let mut settings = (*app.core.settings).clone();
    settings.quotas.sms_per_host.limit = 3;
    let restarted = Core::new(
        app.core.db.clone(),
        std::sync::Arc::new(settings),
        app.core.clock.clone(),
        app.core.keys.clone(),
        app.core.metrics.clone(),
        app.core.templates.clone(),
        false,
    );
    let host = authenticated_host(&app).await;
    let mut accepted = 0;
    for i in 1..10 {
        let phone = format!("+62812345678{i:02}");
        match registrations::register(
            &restarted,
            &host,
            register_input(&phone),
            &ClientPresence::always_waiting(),
        )
        .await
        {
            Ok(_) => accepted += 1,
            Err(refused) => {
                assert!(refused.to_string().contains("host sms quota"), "{refused}");
                break;
            }
        }
    }
    assert_eq!(accepted, 2, "one sent before the change, two after it");
    assert_eq!(quota_counts(&app, "sms:host:%").await, vec![3]);
    assert_allowances_hold(&app, "sms:host:%", 3).await;
}
