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
