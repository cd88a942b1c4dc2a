use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PHONE, register_body, spawn_app};

#[tokio::test]
async fn the_openapi_document_is_served_without_a_token() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let served: Value = response.json().await.unwrap();
    let built = serde_json::to_value(customer_registration::http::openapi::document()).unwrap();
    assert_eq!(served, built);
    assert_eq!(served["openapi"], "3.1.0");
    for (path, method) in [
        ("/b2b/customer/register", "post"),
        ("/b2b/customer/register/confirm", "post"),
        ("/b2b/customer/auth/verifyUsername", "get"),
        ("/b2b/customer/auth/verifyEmail", "get"),
        ("/b2b/customer/resend/registration/sms", "post"),
        ("/b2b/customer/resend/registration/email", "post"),
        ("/oauth/token", "post"),
    ] {
        assert!(served["paths"][path][method].is_object(), "{method} {path}");
    }
}

/// Every member a real answer carries is in its schema, and every member
/// the schema requires is in the answer.
fn assert_matches_schema(document: &Value, schema: &str, body: &Value) {
    let schema = &document["components"]["schemas"][schema];
    let properties = schema["properties"].as_object().unwrap();
    let body = body.as_object().unwrap();
    for key in body.keys() {
        assert!(properties.contains_key(key), "{key} is not documented");
    }
    for key in schema["required"].as_array().unwrap() {
        assert!(body.contains_key(key.as_str().unwrap()), "{key} missing");
    }
}

#[tokio::test]
async fn the_document_describes_what_the_service_answers() {
    let app = spawn_app().await;
    let document = serde_json::to_value(customer_registration::http::openapi::document()).unwrap();
    let mut body = register_body(PHONE);
    body["email"] = json!("someone@example.com");
    let ticket = app.register(&body).await;
    assert_matches_schema(&document, "TicketBody", &ticket);
    let ticket_schema = &document["components"]["schemas"]["TicketBody"]["properties"];
    assert!(ticket_schema["accountGroipId"].is_object());
    assert!(ticket_schema["accountGroupId"].is_object());

    let answer: Value = app
        .get("/b2b/customer/auth/verifyEmail?email=someone@example.com")
        .await
        .json()
        .await
        .unwrap();
    assert_matches_schema(&document, "EmailBody", &answer);
    let answer: Value = app
        .get("/b2b/customer/auth/verifyUsername?username=081234567890")
        .await
        .json()
        .await
        .unwrap();
    assert_matches_schema(&document, "UsernameBody", &answer);

    let refused: Value = app
        .post("/b2b/customer/register", &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_matches_schema(&document, "ErrorBody", &refused);
}
