//! Send quotas and destination countries, against SMS pumping.
use chrono::Duration;
use entity::{outbox_message, registration};
use reqwest::{StatusCode, header};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::json;

use crate::helpers::{PHONE, assert_error, register_body, spawn_app_with};

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
    let body = assert_error(
        refused,
        StatusCode::TOO_MANY_REQUESTS,
        "SEND_QUOTA_EXCEEDED",
    )
    .await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("phone sms quota"),
        "{body}"
    );
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
    let body = assert_error(
        refused,
        StatusCode::TOO_MANY_REQUESTS,
        "SEND_QUOTA_EXCEEDED",
    )
    .await;
    assert!(body["message"].as_str().unwrap().contains("host"), "{body}");
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
    let body = assert_error(
        refused,
        StatusCode::TOO_MANY_REQUESTS,
        "SEND_QUOTA_EXCEEDED",
    )
    .await;
    assert!(
        body["message"].as_str().unwrap().contains("global"),
        "{body}"
    );
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
    let body = assert_error(
        refused,
        StatusCode::TOO_MANY_REQUESTS,
        "SEND_QUOTA_EXCEEDED",
    )
    .await;
    assert!(
        body["message"].as_str().unwrap().contains("email"),
        "{body}"
    );
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
