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

    // "Retry later" is not an outcome: after the cooldown the same key runs.
    let body = json!({"username": PHONE, "phone": PHONE});
    let path = "/b2b/customer/resend/registration/sms";
    let first = post_with_key(&app, path, "r-1", &body).await;
    assert_eq!(first.status(), StatusCode::TOO_MANY_REQUESTS);
    app.clock.advance(chrono::Duration::seconds(61));
    let later = post_with_key(&app, path, "r-1", &body).await;
    assert_eq!(later.status(), StatusCode::OK);
    let replayed = post_with_key(&app, path, "r-1", &body).await;
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");

    // The same over GraphQL, where the error rides in a 200 response.
    let resend = json!({
        "query": "mutation($input: ResendInput!) { resendRegistrationSms(input: $input) { attempt } }",
        "variables": {"input": body}
    });
    let too_soon: Value = post_with_key(&app, "/graphql", "gql-r", &resend)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        too_soon["errors"][0]["extensions"]["code"],
        "RESEND_TOO_SOON"
    );
    app.clock.advance(chrono::Duration::seconds(61));
    let resent: Value = post_with_key(&app, "/graphql", "gql-r", &resend)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        resent["data"]["resendRegistrationSms"]["attempt"], 3,
        "{resent}"
    );

    // A final refusal is remembered as refused.
    let taken = post_with_key(
        &app,
        "/b2b/customer/resend/registration/email",
        "e-1",
        &json!({"username": "+6281299990000", "phone": "+6281299990000"}),
    )
    .await;
    assert_eq!(taken.status(), StatusCode::NOT_FOUND);
    let again = post_with_key(
        &app,
        "/b2b/customer/resend/registration/email",
        "e-1",
        &json!({"username": "+6281299990000", "phone": "+6281299990000"}),
    )
    .await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");

    let bad_key = post_with_key(&app, "/b2b/customer/register", "", &register_body(PHONE)).await;
    assert_error(bad_key, StatusCode::BAD_REQUEST, "VALIDATION_FAILED").await;
}

use sea_orm::EntityTrait;

/// A request cut off before it answered holds its key only for a lease;
/// a retry after that runs instead of waiting out the retention.
#[tokio::test]
async fn an_abandoned_key_is_taken_over_after_its_lease() {
    use sea_orm::{ActiveValue::Set, EntityTrait};
    let app = spawn_app().await;
    let body = register_body(PHONE);
    let path = "/b2b/customer/register";
    // What the middleware stores when a request starts, for the very body the
    // client will retry with (the fingerprint is over method, URI and body).
    let host_id = app.host_id().await;
    let fingerprint = customer_registration::crypto::sha256_hex(&format!(
        "POST {path}\n{}",
        serde_json::to_string(&body).unwrap()
    ));
    let now = app.core.clock.now();
    entity::idempotency_record::Entity::insert(entity::idempotency_record::ActiveModel {
        host_id: Set(host_id),
        idempotency_key: Set("cut-off".into()),
        request_fingerprint: Set(fingerprint),
        response_status: Set(None),
        response_body: Set(None),
        created_at: Set(now),
        locked_until: Set(Some(now + chrono::Duration::seconds(60))),
    })
    .exec(&app.core.db)
    .await
    .unwrap();
    let waiting = post_with_key(&app, path, "cut-off", &body).await;
    assert_error(
        waiting,
        StatusCode::CONFLICT,
        "IDEMPOTENCY_REQUEST_IN_PROGRESS",
    )
    .await;
    app.clock.advance(chrono::Duration::seconds(61));
    let retried = post_with_key(&app, path, "cut-off", &body).await;
    assert_eq!(retried.status(), StatusCode::OK);
    let replayed = post_with_key(&app, path, "cut-off", &body).await;
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
}
