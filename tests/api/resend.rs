use chrono::Duration;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::{PHONE, assert_error, register_body, spawn_app, spawn_app_with};

fn resend_body() -> Value {
    json!({"username": PHONE, "phone": "081234567890"})
}

#[tokio::test]
async fn resend_sms_waits_for_the_cooldown_then_issues_a_new_token() {
    let app = spawn_app().await;
    let first = app.register(&register_body(PHONE)).await;
    let old_token = app.sms_token(PHONE, 1).await;

    let too_soon = app
        .post("/b2b/customer/resend/registration/sms", &resend_body())
        .await;
    assert_eq!(too_soon.headers()[header::RETRY_AFTER], "60");
    assert_error(too_soon, StatusCode::TOO_MANY_REQUESTS, "RESEND_TOO_SOON").await;

    app.clock.advance(Duration::seconds(60));
    let response = app
        .post("/b2b/customer/resend/registration/sms", &resend_body())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let ticket: Value = response.json().await.unwrap();
    assert_eq!(ticket["id"], first["id"]);
    assert_eq!(ticket["attempt"], 2);
    assert_eq!(ticket["smsResendsRemaining"], 3);
    // The resends answer with the register ticket, legacy spelling included.
    assert_eq!(ticket["accountGroupId"], "01");
    assert_eq!(ticket["accountGroipId"], "01");
    let new_token = app.sms_token(PHONE, 2).await;
    assert_eq!(&new_token[..3], ticket["tokenPrefix"].as_str().unwrap());
    assert_ne!(new_token, old_token);

    let stale = app.confirm(PHONE, "pw", &old_token).await;
    assert_error(stale, StatusCode::UNPROCESSABLE_ENTITY, "TOKEN_SUPERSEDED").await;
    assert_eq!(
        app.confirm(PHONE, "pw", &new_token).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn resends_are_capped_per_registration() {
    let app = spawn_app_with(|s| s.registration.max_sends = 3).await;
    app.register(&register_body(PHONE)).await;
    for sent in 1..=2 {
        // Each SMS goes out before the next replaces it (else it is cancelled).
        app.sms_token(PHONE, sent).await;
        app.clock.advance(Duration::seconds(61));
        let response = app
            .post("/b2b/customer/resend/registration/sms", &resend_body())
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    app.clock.advance(Duration::seconds(61));
    let capped = app
        .post("/b2b/customer/resend/registration/sms", &resend_body())
        .await;
    assert!(capped.headers().contains_key(header::RETRY_AFTER));
    assert_error(
        capped,
        StatusCode::TOO_MANY_REQUESTS,
        "RESEND_LIMIT_REACHED",
    )
    .await;
    // Exactly the allowed sends went out.
    app.sms_token(PHONE, 3).await;
    assert_eq!(app.sms_count(PHONE), 3);
}

#[tokio::test]
async fn resend_requires_matching_username_and_phone() {
    let app = spawn_app().await;
    app.register(&register_body(PHONE)).await;
    let response = app
        .post(
            "/b2b/customer/resend/registration/sms",
            &json!({"username": PHONE, "phone": "+6281298765432"}),
        )
        .await;
    let body = assert_error(response, StatusCode::BAD_REQUEST, "VALIDATION_FAILED").await;
    assert_eq!(body["details"][0]["field"], "phone");
    assert_eq!(body["details"][0]["code"], "mismatch");

    let missing = app
        .post("/b2b/customer/resend/registration/sms", &json!({}))
        .await;
    let body = assert_error(missing, StatusCode::BAD_REQUEST, "VALIDATION_FAILED").await;
    assert_eq!(body["details"].as_array().unwrap().len(), 2);

    let unknown = app
        .post(
            "/b2b/customer/resend/registration/sms",
            &json!({"username": "+6281298765432", "phone": "+6281298765432"}),
        )
        .await;
    assert_error(unknown, StatusCode::NOT_FOUND, "REGISTRATION_NOT_FOUND").await;
}

#[tokio::test]
async fn resend_email_sends_a_fresh_link() {
    let app = spawn_app().await;
    app.register(&register_body(PHONE)).await;
    let first = app.emails(1).await;
    app.clock.advance(Duration::seconds(60));
    let response = app
        .post("/b2b/customer/resend/registration/email", &resend_body())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let ticket: Value = response.json().await.unwrap();
    assert_eq!(ticket["emailResendsRemaining"], 3);
    assert_eq!(ticket["attempt"], 1, "the SMS token is unchanged");
    assert_eq!(ticket["accountGroupId"], "01");
    assert_eq!(ticket["accountGroipId"], "01");
    let emails = app.emails(2).await;
    let link = |email: &str| {
        email
            .lines()
            .find(|l| l.contains("/complete/"))
            .unwrap()
            .trim()
            .to_owned()
    };
    let links: Vec<String> = emails.iter().map(|e| link(&e.text)).collect();
    assert!(links.contains(&link(&first[0].text)));
    assert_ne!(links[0], links[1]);
    let token_part = links[0].rsplit('/').next().unwrap();
    assert!(token_part.len() >= 43, "at least 256 bits: {token_part}");
}

#[tokio::test]
async fn resend_email_without_an_email_is_a_clear_error() {
    let app = spawn_app().await;
    let mut body = register_body(PHONE);
    body.as_object_mut().unwrap().remove("email");
    app.register(&body).await;
    app.clock.advance(Duration::seconds(60));
    let response = app
        .post("/b2b/customer/resend/registration/email", &resend_body())
        .await;
    assert_error(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "NO_EMAIL_ON_REGISTRATION",
    )
    .await;
}
