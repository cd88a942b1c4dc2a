use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PHONE, assert_error, register_body, spawn_app_with};

#[tokio::test]
async fn verify_username_normalises_with_the_default_region() {
    let app = spawn_app_with(|_| {}).await;
    let body: Value = app
        .get("/b2b/customer/auth/verifyUsername?username=0812-3456-7890")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body, json!({"username": PHONE, "exists": false}));

    for (query, code) in [
        ("username=hello", "invalid_phone"),
        ("", "required"),
        ("username=", "required"),
    ] {
        let response = app
            .get(&format!("/b2b/customer/auth/verifyUsername?{query}"))
            .await;
        let body = assert_error(response, StatusCode::BAD_REQUEST, "VALIDATION_FAILED").await;
        assert_eq!(body["details"][0]["field"], "username");
        assert_eq!(body["details"][0]["code"], code);
    }
}

#[tokio::test]
async fn verify_email_normalises_and_rejects_garbage() {
    let app = spawn_app_with(|_| {}).await;
    let body: Value = app
        .get("/b2b/customer/auth/verifyEmail?email=%20Someone%40Example.com")
        .await
        .json()
        .await
        .unwrap();
    // `username` is the legacy spec's member: the normalised email too.
    assert_eq!(
        body,
        json!({"username": "someone@example.com", "email": "someone@example.com", "exists": false})
    );

    let response = app.get("/b2b/customer/auth/verifyEmail?email=nope").await;
    let body = assert_error(response, StatusCode::BAD_REQUEST, "VALIDATION_FAILED").await;
    assert_eq!(body["details"][0]["code"], "invalid_email");
}

#[tokio::test]
async fn verify_email_names_the_email_never_whose_phone_it_is() {
    let app = spawn_app_with(|_| {}).await;
    let mut body = register_body(PHONE);
    body["email"] = json!("Taken@Example.com");
    app.register(&body).await;
    let token = app.sms_token(PHONE, 1).await;
    let confirmed = app.confirm(PHONE, "secret password", &token).await;
    assert_eq!(confirmed.status(), StatusCode::OK);

    let body: Value = app
        .get("/b2b/customer/auth/verifyEmail?email=TAKEN%40example.com")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body,
        json!({"username": "taken@example.com", "email": "taken@example.com", "exists": true})
    );
    assert!(!body.to_string().contains("812"), "{body}");
}

/// On SQLite verify's lookups run on connections of their own, which go
/// back to their pool without sqlx's ping (`db::lookups`). A connection
/// that answered before a customer was completed must not answer from what
/// it saw then, and every lookup is still counted.
#[tokio::test]
async fn a_verify_sees_a_customer_completed_after_its_connection_last_looked() {
    // Without a verify limit: its counts are synced with the database
    // every 100 ms, statements this test would count.
    let app = spawn_app_with(|s| s.quotas.verify_per_host.limit = 0).await;
    let verify = || async {
        let body: Value = app
            .get("/b2b/customer/auth/verifyUsername?username=081234567890")
            .await
            .json()
            .await
            .unwrap();
        body["exists"].clone()
    };
    // The first request reads its access token from the database.
    assert_eq!(verify().await, json!(false));
    let before = app.core.metrics.db_statements();
    // More lookups at once than there are lookup connections: each of
    // them has answered by the time the customer is completed.
    let answers = futures::future::join_all((0..8).map(|_| verify())).await;
    assert!(answers.iter().all(|a| a == &json!(false)), "{answers:?}");
    // At least: the delivery loop may count its own meanwhile.
    assert!(app.core.metrics.db_statements() - before >= 8);

    app.register(&register_body(PHONE)).await;
    let token = app.sms_token(PHONE, 1).await;
    let confirmed = app.confirm(PHONE, "secret password", &token).await;
    assert_eq!(confirmed.status(), StatusCode::OK);

    let answers = futures::future::join_all((0..8).map(|_| verify())).await;
    assert!(answers.iter().all(|a| a == &json!(true)), "{answers:?}");
}

/// The lookups do not queue behind the pool that transactions use: with
/// every one of its connections taken, a verify still answers at once on
/// SQLite (through the pool it would wait out the 10 s acquire timeout).
#[tokio::test]
async fn on_sqlite_a_verify_answers_while_every_pooled_connection_is_taken() {
    let app = spawn_app_with(|_| {}).await;
    if app.core.db.get_database_backend() != sea_orm::DbBackend::Sqlite {
        return;
    }
    // The first request reads its access token through the pool.
    let warm_up = app
        .get("/b2b/customer/auth/verifyUsername?username=081234567890")
        .await;
    assert_eq!(warm_up.status(), StatusCode::OK);
    let pool = app.core.db.get_sqlite_connection_pool();
    let mut taken = Vec::new();
    while let Ok(Ok(connection)) =
        tokio::time::timeout(std::time::Duration::from_millis(200), pool.acquire()).await
    {
        taken.push(connection);
    }
    assert_eq!(taken.len(), pool.options().get_max_connections() as usize);
    let response = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        app.get("/b2b/customer/auth/verifyUsername?username=081234567890"),
    )
    .await
    .expect("a verify waited for the transactions' pool");
    assert_eq!(response.status(), StatusCode::OK);
}
