//! SMS over HTTP gateways, each stood up locally with wiremock: request
//! shape, authentication, and what each kind of answer does.
use std::time::Duration as StdDuration;

use chrono::Duration;
use customer_registration::config::{Settings, SmsTransportKind};
use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{header, method, path},
};

use crate::helpers::{PHONE, TestApp, eventually, register_body, spawn_app_with};

fn webhook(url: String) -> impl FnOnce(&mut Settings) {
    move |s: &mut Settings| {
        s.delivery.sms.transport = SmsTransportKind::Webhook;
        s.delivery.sms.timeout_seconds = 1;
        s.delivery.sms.webhook.url = url;
        s.delivery
            .sms
            .webhook
            .headers
            .insert("X-Api-Key".into(), "secret-key".to_owned().into());
        s.delivery.sms.webhook.message_id_pointer = "/data/messageId".into();
    }
}

async fn sms_delivery(app: &TestApp, id: &Value, done: impl Fn(&Value) -> bool) -> Value {
    app.wait_for_delivery(id, "SMS", done).await
}

#[tokio::test]
async fn webhook_gateway_gets_json_with_its_key_and_202_counts_as_sent() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/sms"))
        .and(header("x-api-key", "secret-key"))
        .and(header("content-type", "application/json"))
        .respond_with(
            ResponseTemplate::new(202).set_body_json(json!({"data": {"messageId": "gw-123"}})),
        )
        .expect(1)
        .mount(&gateway)
        .await;
    let app = spawn_app_with(webhook(format!("{}/sms", gateway.uri()))).await;
    let ticket = app.register(&register_body(PHONE)).await;
    let sent = sms_delivery(&app, &ticket["id"], |d| d["status"] == "SENT").await;
    assert_eq!(sent["providerMessageId"], "gw-123");

    let requests = gateway.received_requests().await.unwrap();
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(body["to"], PHONE);
    let text = body["text"].as_str().unwrap();
    assert!(
        text.starts_with(ticket["tokenPrefix"].as_str().unwrap()),
        "{text}"
    );
}

#[tokio::test]
async fn a_gateway_4xx_is_permanent() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_string("invalid number"))
        .mount(&gateway)
        .await;
    let app = spawn_app_with(webhook(format!("{}/sms", gateway.uri()))).await;
    let ticket = app.register(&register_body(PHONE)).await;
    let dead = sms_delivery(&app, &ticket["id"], |d| d["status"] == "DEAD").await;
    assert_eq!(dead["attempts"], 1);
    assert_eq!(dead["lastErrorClass"], "permanent");
    assert!(
        dead["lastError"].as_str().unwrap().contains("400"),
        "{dead}"
    );
}

#[tokio::test]
async fn a_gateway_5xx_or_timeout_is_retried_with_backoff() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&gateway)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(StdDuration::from_secs(3)))
        .up_to_n_times(1)
        .mount(&gateway)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {"messageId": 42}})))
        .mount(&gateway)
        .await;
    let app = spawn_app_with(webhook(format!("{}/sms", gateway.uri()))).await;
    let ticket = app.register(&register_body(PHONE)).await;

    let first = sms_delivery(&app, &ticket["id"], |d| d["attempts"] == 1).await;
    assert_eq!(
        first["status"], "PENDING",
        "not sent before the backoff passes"
    );
    app.clock.advance(Duration::minutes(5));
    sms_delivery(&app, &ticket["id"], |d| d["attempts"] == 2).await;
    app.clock.advance(Duration::minutes(5));
    let sent = sms_delivery(&app, &ticket["id"], |d| d["status"] == "SENT").await;
    assert_eq!(sent["providerMessageId"], "42");
    let timeline = sent["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 3);
    assert!(
        timeline[0]["error"].as_str().unwrap().contains("503"),
        "{timeline:?}"
    );
    assert!(
        timeline[1]["error"].as_str().unwrap().contains("timed out"),
        "{timeline:?}"
    );
    assert_eq!(timeline[0]["errorClass"], "transient");
    assert_eq!(timeline[1]["errorClass"], "transient");
    assert_eq!(timeline[2]["outcome"], "sent");
}

#[tokio::test]
async fn twilio_style_gateway_gets_a_basic_auth_form_post() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/2010-04-01/Accounts/AC123/Messages.json"))
        // base64("AC123:auth-token")
        .and(header("authorization", "Basic QUMxMjM6YXV0aC10b2tlbg=="))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"sid": "SM0001", "status": "queued"})),
        )
        .expect(1)
        .mount(&gateway)
        .await;
    let uri = gateway.uri();
    let app = spawn_app_with(move |s| {
        s.delivery.sms.transport = SmsTransportKind::Twilio;
        s.delivery.sms.twilio.base_url = uri;
        s.delivery.sms.twilio.account_sid = "AC123".into();
        s.delivery.sms.twilio.auth_token = Some("auth-token".to_owned().into());
        s.delivery.sms.twilio.from = "WALLET".into();
    })
    .await;
    let ticket = app.register(&register_body(PHONE)).await;
    let sent = sms_delivery(&app, &ticket["id"], |d| d["status"] == "SENT").await;
    assert_eq!(sent["providerMessageId"], "SM0001");
    let requests = gateway.received_requests().await.unwrap();
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&requests[0].body).unwrap();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap()
    };
    assert_eq!(field("To"), PHONE);
    assert_eq!(field("From"), "WALLET");
    assert!(field("Body").starts_with(ticket["tokenPrefix"].as_str().unwrap()));
}

#[tokio::test]
async fn gateway_secrets_never_reach_the_stored_errors() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_string("bad key"))
        .mount(&gateway)
        .await;
    let app = spawn_app_with(webhook(format!("{}/sms", gateway.uri()))).await;
    let ticket = app.register(&register_body(PHONE)).await;
    let dead = sms_delivery(&app, &ticket["id"], |d| d["status"] == "DEAD").await;
    assert!(!dead.to_string().contains("secret-key"));
}

/// A gateway that is slow to answer one SMS holds up only that one: the
/// delivery loop goes on claiming and sending what comes due meanwhile,
/// and records each send when it finishes.
#[tokio::test]
async fn a_slow_send_does_not_hold_up_the_messages_queued_after_it() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": {"messageId": "slow"}}))
                .set_delay(StdDuration::from_secs(8)),
        )
        .up_to_n_times(1)
        .mount(&gateway)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"data": {"messageId": "quick"}})),
        )
        .mount(&gateway)
        .await;
    let app = spawn_app_with(|s| {
        webhook(format!("{}/sms", gateway.uri()))(s);
        s.delivery.sms.timeout_seconds = 10;
    })
    .await;
    let slow = app.register(&register_body(PHONE)).await;
    eventually("the first SMS at the gateway", || async {
        (gateway.received_requests().await.unwrap().len() == 1).then_some(())
    })
    .await;

    let quick = app.register(&register_body("+6281234567891")).await;
    let sent = sms_delivery(&app, &quick["id"], |d| d["status"] == "SENT").await;
    assert_eq!(sent["providerMessageId"], "quick");
    let waiting = sms_delivery(&app, &slow["id"], |_| true).await;
    assert_eq!(
        (waiting["status"].as_str(), waiting["attempts"].as_i64()),
        (Some("PENDING"), Some(0)),
        "the slow send is still out: {waiting}"
    );
    let sent = sms_delivery(&app, &slow["id"], |d| d["status"] == "SENT").await;
    assert_eq!(sent["providerMessageId"], "slow");
}

/// While every send it may have out is waiting on a slow gateway, the
/// delivery loop still goes round: readiness reports it waiting, not
/// stuck.
#[tokio::test]
async fn the_delivery_loop_stays_ready_while_its_sends_wait_on_a_slow_gateway() {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": {"messageId": "slow"}}))
                .set_delay(StdDuration::from_secs(15)),
        )
        .mount(&gateway)
        .await;
    let app = spawn_app_with(|s| {
        webhook(format!("{}/sms", gateway.uri()))(s);
        s.delivery.sms.timeout_seconds = 20;
        // One send out is all it may have.
        s.delivery.batch_size = 1;
    })
    .await;
    app.register(&register_body(PHONE)).await;
    eventually("the SMS at the gateway", || async {
        (gateway.received_requests().await.unwrap().len() == 1).then_some(())
    })
    .await;
    // Past the readiness check's allowance since the loop's last beat.
    app.clock.advance(Duration::minutes(10));
    eventually("the loop to beat again with its send still out", || async {
        let response = app.get("/readyz").await;
        (response.status() == reqwest::StatusCode::OK).then_some(())
    })
    .await;
    assert_eq!(gateway.received_requests().await.unwrap().len(), 1);
}
