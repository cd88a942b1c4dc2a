use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PHONE, TestApp, assert_error, register_body, spawn_app};

async fn post_with_key(app: &TestApp, path: &str, key: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(format!("{}{path}", app.address))
        .bearer_auth(&app.token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_retried_register_returns_the_first_response_and_sends_once() {
    let app = spawn_app().await;
    let first = post_with_key(
        &app,
        "/b2b/customer/register",
        "key-1",
        &register_body(PHONE),
    )
    .await;
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.unwrap();
    let retry = post_with_key(
        &app,
        "/b2b/customer/register",
        "key-1",
        &register_body(PHONE),
    )
    .await;
    assert_eq!(retry.status(), StatusCode::OK);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(first, retry);

    app.outbox_drained().await;
    assert_eq!(app.sms_count(PHONE), 1, "the retry sent nothing");

    let mut other = register_body(PHONE);
    other["name"] = json!("Someone Else");
    let reused = post_with_key(&app, "/b2b/customer/register", "key-1", &other).await;
    assert_error(
        reused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "IDEMPOTENCY_KEY_REUSED",
    )
    .await;
}

#[tokio::test]
async fn idempotency_covers_graphql_and_errors_too() {
    let app = spawn_app().await;
    let mutation = json!({
        "query": "mutation($input: RegisterInput!) { register(input: $input) { id tokenPrefix } }",
        "variables": {"input": register_body(PHONE)}
    });
    let first: Value = post_with_key(&app, "/graphql", "gql-1", &mutation)
        .await
        .json()
        .await
        .unwrap();
    let again: Value = post_with_key(&app, "/graphql", "gql-1", &mutation)
        .await
        .json()
        .await
        .unwrap();
    assert!(first["errors"].is_null(), "{first}");
    assert_eq!(first, again);
    assert_eq!(
        entity::registration::Entity::find()
            .all(&app.core.db)
            .await
            .unwrap()
            .len(),
        1
    );

    // A refused request is remembered as refused.
    let body = json!({"username": PHONE, "phone": PHONE});
    let first = post_with_key(&app, "/b2b/customer/resend/registration/sms", "r-1", &body).await;
    assert_eq!(first.status(), StatusCode::TOO_MANY_REQUESTS);
    app.clock.advance(chrono::Duration::seconds(61));
    let replayed = post_with_key(&app, "/b2b/customer/resend/registration/sms", "r-1", &body).await;
    assert_eq!(replayed.status(), StatusCode::TOO_MANY_REQUESTS);
    let fresh_key =
        post_with_key(&app, "/b2b/customer/resend/registration/sms", "r-2", &body).await;
    assert_eq!(fresh_key.status(), StatusCode::OK);

    let bad_key = post_with_key(&app, "/b2b/customer/register", "", &register_body(PHONE)).await;
    assert_error(bad_key, StatusCode::BAD_REQUEST, "VALIDATION_FAILED").await;
}

use sea_orm::EntityTrait;
