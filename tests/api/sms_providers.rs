//! Several SMS providers: routing by country, failover with the same text
//! after failed sends and after undelivered receipts, and the signed
//! delivery receipts themselves (generic webhook and Twilio), each provider
//! a local wiremock gateway.
use base64::Engine;
use customer_registration::config::{Settings, SmsProviderSettings, SmsTransportKind};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{body_string_contains, method},
};

use crate::helpers::{PHONE, TestApp, register_body, spawn_app_with};

const SECRET: &str = "receipt-secret";

fn provider(name: &str, url: String) -> SmsProviderSettings {
    SmsProviderSettings {
        name: name.into(),
        transport: SmsTransportKind::Webhook,
        url,
        message_id_pointer: "/id".into(),
        receipt_secret: Some(SECRET.to_owned().into()),
        body_template: r#"{"to": {{ recipient|tojson }}, "text": {{ text|tojson }}, "callback": {{ callback_url|tojson }}}"#.into(),
        ..SmsProviderSettings::default()
    }
}

fn providers(list: Vec<SmsProviderSettings>) -> impl FnOnce(&mut Settings) {
    move |s: &mut Settings| {
        s.delivery.sms.timeout_seconds = 1;
        s.delivery.sms.providers = list;
    }
}

/// A gateway that answers every send with `status` and the message id `id`.
async fn gateway(status: u16, id: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(status).set_body_json(json!({"id": id})))
        .mount(&server)
        .await;
    server
}

async fn texts(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// Providers `primary` and `backup`, both accepting (ids `p-1`, `b-1`), and
/// a registration whose SMS `primary` accepted.
async fn sent_through_primary() -> (TestApp, MockServer, MockServer, Value) {
    let primary = gateway(200, "p-1").await;
    let backup = gateway(200, "b-1").await;
    let app = spawn_app_with(providers(vec![
        provider("primary", format!("{}/send", primary.uri())),
        provider("backup", format!("{}/send", backup.uri())),
    ]))
    .await;
    let ticket = app.register(&register_body(PHONE)).await;
    sms(&app, &ticket["id"], |d| d["status"] == "SENT").await;
    (app, primary, backup, ticket)
}

/// An undelivered receipt from `primary`, and the SMS once `backup` has
/// sent it again.
async fn failed_over_to_backup(app: &TestApp, ticket: &Value, undelivered: &Value) -> Value {
    assert_eq!(
        post_receipt(app, "primary", undelivered, SECRET).await,
        StatusCode::NO_CONTENT
    );
    sms(app, &ticket["id"], |d| {
        d["status"] == "SENT" && d["provider"] == "backup"
    })
    .await
}

/// Each event of a delivery's timeline: its outcome, provider and the
/// provider's message id.
fn timeline_steps(delivery: &Value) -> Vec<(&str, &str, &str)> {
    delivery["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["outcome"].as_str().unwrap(),
                e["provider"].as_str().unwrap(),
                e["providerMessageId"].as_str().unwrap(),
            )
        })
        .collect()
}

/// The code in the first SMS the gateway received (its text's first word).
async fn first_code(server: &MockServer) -> String {
    texts(server).await[0]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

async fn sms(app: &TestApp, id: &Value, done: impl Fn(&Value) -> bool) -> Value {
    app.wait_for_delivery(id, "SMS", done).await
}

fn signed(body: &Value, secret: &str) -> (String, String) {
    let body = body.to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    (body, signature)
}

pub(crate) async fn post_receipt(
    app: &TestApp,
    provider: &str,
    body: &Value,
    secret: &str,
) -> StatusCode {
    let (body, signature) = signed(body, secret);
    app.client
        .post(format!("{}/delivery/receipts/{provider}", app.address))
        .header("content-type", "application/json")
        .header("x-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn transient_failures_beyond_the_limit_move_the_sms_to_the_next_provider_with_the_same_text()
{
    let primary = gateway(503, "").await;
    let backup = gateway(200, "b-1").await;
    let mut first = provider("primary", format!("{}/send", primary.uri()));
    first.failover_after = 1;
    let app = spawn_app_with(providers(vec![
        first,
        provider("backup", format!("{}/send", backup.uri())),
    ]))
    .await;
    let ticket = app.register(&register_body(PHONE)).await;

    let sent = sms(&app, &ticket["id"], |d| d["status"] == "SENT").await;
    assert_eq!(sent["provider"], "backup");
    assert_eq!(sent["providerMessageId"], "b-1");
    let timeline = sent["timeline"].as_array().unwrap();
    assert_eq!(timeline[0]["provider"], "primary", "{timeline:?}");
    assert_eq!(timeline[0]["outcome"], "failed");
    assert!(
        timeline[0]["error"]
            .as_str()
            .unwrap()
            .contains("moving to SMS provider backup"),
        "{timeline:?}"
    );
    assert_eq!(timeline[1]["provider"], "backup");
    assert_eq!(timeline[1]["outcome"], "sent");
    assert_eq!(texts(&primary).await, texts(&backup).await, "the same code");
}

#[tokio::test]
async fn a_permanent_failure_moves_on_at_once_and_the_last_provider_failing_kills_it() {
    let primary = gateway(400, "").await;
    let backup = gateway(422, "").await;
    let app = spawn_app_with(providers(vec![
        provider("primary", format!("{}/send", primary.uri())),
        provider("backup", format!("{}/send", backup.uri())),
    ]))
    .await;
    let ticket = app.register(&register_body(PHONE)).await;
    let dead = sms(&app, &ticket["id"], |d| d["status"] == "DEAD").await;
    assert_eq!(dead["attempts"], 2, "one try on each provider: {dead}");
    assert_eq!(dead["provider"], "backup");
    assert_eq!(texts(&primary).await.len(), 1);
    assert_eq!(texts(&backup).await.len(), 1);
}

#[tokio::test]
async fn each_country_goes_to_its_own_providers() {
    let indonesia = gateway(200, "id-1").await;
    let elsewhere = gateway(200, "x-1").await;
    let mut local = provider("indonesia", format!("{}/send", indonesia.uri()));
    local.countries = vec!["ID".into()];
    let mut other = provider("elsewhere", format!("{}/send", elsewhere.uri()));
    other.countries = vec!["MY".into(), "sg".into()];
    let app = spawn_app_with(|s| {
        s.quotas.allowed_countries = vec!["ID".into(), "MY".into()];
        providers(vec![local, other])(s);
    })
    .await;
    let id = app.register(&register_body(PHONE)).await;
    let response = app
        .post("/b2b/customer/register", &register_body("+60123456789"))
        .await;
    let uk: Value = response.json().await.unwrap();
    assert!(uk["id"].is_string(), "{uk}");
    assert_eq!(
        sms(&app, &id["id"], |d| d["status"] == "SENT").await["provider"],
        "indonesia"
    );
    assert_eq!(
        sms(&app, &uk["id"], |d| d["status"] == "SENT").await["provider"],
        "elsewhere"
    );
    assert_eq!(texts(&indonesia).await.len(), 1);
    assert_eq!(texts(&elsewhere).await.len(), 1);
}

#[tokio::test]
async fn a_signed_delivered_receipt_is_final_and_repeats_or_late_ones_change_nothing() {
    let (app, primary, backup, ticket) = sent_through_primary().await;
    let callback =
        serde_json::from_slice::<Value>(&primary.received_requests().await.unwrap()[0].body)
            .unwrap()["callback"]
            .clone();
    assert_eq!(
        callback,
        format!(
            "{}/delivery/receipts/primary",
            app.core.settings.public_base_url()
        ),
        "the send names where receipts go"
    );

    let delivered =
        json!({"messageId": "p-1", "status": "delivered", "at": "2026-12-01T10:00:00Z"});
    // Unsigned, wrongly signed: refused, nothing changes.
    let unsigned = app
        .client
        .post(format!("{}/delivery/receipts/primary", app.address))
        .json(&delivered)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        unsigned.json::<Value>().await.unwrap()["code"],
        "INVALID_SIGNATURE"
    );
    assert_eq!(
        post_receipt(&app, "primary", &delivered, "wrong").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(sms(&app, &ticket["id"], |_| true).await["status"], "SENT");
    // Another provider's id, an unknown id, an unknown provider: 404.
    assert_eq!(
        post_receipt(&app, "backup", &delivered, SECRET).await,
        StatusCode::NOT_FOUND
    );
    let unknown = json!({"messageId": "nope", "status": "delivered"});
    assert_eq!(
        post_receipt(&app, "primary", &unknown, SECRET).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        post_receipt(&app, "nobody", &delivered, SECRET).await,
        StatusCode::NOT_FOUND
    );
    // A bad status is named.
    let bad = json!({"messageId": "p-1", "status": "arrived"});
    assert_eq!(
        post_receipt(&app, "primary", &bad, SECRET).await,
        StatusCode::BAD_REQUEST
    );

    assert_eq!(
        post_receipt(&app, "primary", &delivered, SECRET).await,
        StatusCode::NO_CONTENT
    );
    let done = sms(&app, &ticket["id"], |d| d["status"] == "DELIVERED").await;
    // Repeated, then an earlier `sent` and a contradicting `undelivered`
    // arriving late: all accepted, none moves it.
    for late in [
        delivered.clone(),
        json!({"messageId": "p-1", "status": "sent"}),
        json!({"messageId": "p-1", "status": "undelivered"}),
    ] {
        assert_eq!(
            post_receipt(&app, "primary", &late, SECRET).await,
            StatusCode::NO_CONTENT
        );
    }
    let after = sms(&app, &ticket["id"], |_| true).await;
    assert_eq!(after["status"], "DELIVERED");
    assert_eq!(after["timeline"], done["timeline"], "nothing added");
    let outcomes: Vec<&str> = after["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["sent", "delivered"]);
    assert!(texts(&backup).await.is_empty());

    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"registration_sms_receipts_total{provider="primary",country="ID",status="delivered"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"registration_sms_sends_total{provider="primary",country="ID",status="sent"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_undelivered_receipt_resends_the_same_text_through_the_next_provider() {
    let (app, primary, backup, ticket) = sent_through_primary().await;
    let undelivered =
        json!({"messageId": "p-1", "status": "undelivered", "error": "30005 unknown handset"});
    let resent = failed_over_to_backup(&app, &ticket, &undelivered).await;
    assert_eq!(texts(&primary).await, texts(&backup).await, "the same code");
    let timeline = resent["timeline"].as_array().unwrap();
    assert_eq!(timeline[1]["outcome"], "undelivered");
    assert!(
        timeline[1]["error"].as_str().unwrap().contains("30005"),
        "{timeline:?}"
    );
    assert_eq!(
        timeline_steps(&resent),
        [
            ("sent", "primary", "p-1"),
            ("undelivered", "primary", "p-1"),
            ("sent", "backup", "b-1")
        ]
    );
    // A late receipt about the send it moved on from is still known, and
    // changes nothing.
    let late = json!({"messageId": "p-1", "status": "delivered"});
    assert_eq!(
        post_receipt(&app, "primary", &late, SECRET).await,
        StatusCode::NO_CONTENT
    );
    let after = sms(&app, &ticket["id"], |_| true).await;
    assert_eq!(after["timeline"], resent["timeline"], "nothing added");
    // The customer can still use the code it carried.
    let code = first_code(&backup).await;
    let confirmed = app.confirm(PHONE, "Secret123!pass", &code).await;
    assert_eq!(confirmed.status(), StatusCode::OK);

    // The last provider's failed receipt is final.
    let failed = json!({"messageId": "b-1", "status": "failed"});
    assert_eq!(
        post_receipt(&app, "backup", &failed, SECRET).await,
        StatusCode::NO_CONTENT
    );
    sms(&app, &ticket["id"], |d| d["status"] == "FAILED").await;
    assert_eq!(texts(&primary).await.len(), 1);
}

/// A send recorded before migration `m20261207_000001` is a timeline row
/// of its own: a receipt that moves its message on adds no second one, and
/// the timeline shows it once.
#[tokio::test]
async fn a_send_recorded_as_a_row_before_the_migration_shows_once() {
    use entity::{delivery_attempt, outbox_message, states::AttemptOutcome};
    use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
    let (app, _primary, _backup, ticket) = sent_through_primary().await;
    let message = outbox_message::Entity::find()
        .filter(outbox_message::Column::ProviderMessageId.eq("p-1"))
        .one(&app.core.db)
        .await
        .unwrap()
        .unwrap();
    delivery_attempt::Entity::insert(delivery_attempt::ActiveModel {
        id: Set(uuid::Uuid::now_v7()),
        message_id: Set(message.id),
        attempted_at: Set(message.sent_at.unwrap()),
        outcome: Set(AttemptOutcome::Sent),
        error_class: Set(None),
        error: Set(None),
        provider_message_id: Set(Some("p-1".into())),
        provider: Set(Some("primary".into())),
    })
    .exec(&app.core.db)
    .await
    .unwrap();
    let sent = sms(&app, &ticket["id"], |_| true).await;
    assert_eq!(sent["timeline"].as_array().unwrap().len(), 1, "{sent}");
    let undelivered = json!({"messageId": "p-1", "status": "undelivered"});
    let resent = failed_over_to_backup(&app, &ticket, &undelivered).await;
    assert_eq!(
        timeline_steps(&resent),
        [
            ("sent", "primary", "p-1"),
            ("undelivered", "primary", "p-1"),
            ("sent", "backup", "b-1")
        ]
    );
}

/// A sent SMS keeps its body only while its code is good: the confirm that
/// used the code erases it, so a late "undelivered" is final and the code
/// goes out nowhere else.
#[tokio::test]
async fn an_undelivered_receipt_after_the_code_was_used_sends_it_nowhere_else() {
    use sea_orm::EntityTrait;
    let (app, primary, backup, ticket) = sent_through_primary().await;
    let code = first_code(&primary).await;
    let confirmed = app.confirm(PHONE, "Secret123!pass", &code).await;
    assert_eq!(confirmed.status(), StatusCode::OK);
    let stored = entity::outbox_message::Entity::find()
        .all(&app.core.db)
        .await
        .unwrap();
    assert!(
        stored.iter().all(|m| m.body.is_none()),
        "the used code's SMS keeps no body"
    );

    let undelivered = json!({"messageId": "p-1", "status": "undelivered"});
    assert_eq!(
        post_receipt(&app, "primary", &undelivered, SECRET).await,
        StatusCode::NO_CONTENT
    );
    sms(&app, &ticket["id"], |d| d["status"] == "UNDELIVERED").await;
    assert!(
        texts(&backup).await.is_empty(),
        "nothing went to the backup"
    );
}

#[tokio::test]
async fn twilio_receipts_are_verified_with_the_auth_token_over_the_callback_url() {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string_contains("StatusCallback="))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"sid": "SM42"})))
        .expect(1)
        .mount(&twilio)
        .await;
    let base = twilio.uri();
    let app = spawn_app_with(providers(vec![SmsProviderSettings {
        name: "twilio".into(),
        transport: SmsTransportKind::Twilio,
        base_url: base,
        account_sid: "AC123".into(),
        auth_token: Some("auth-token".to_owned().into()),
        from: "+15005550006".into(),
        ..SmsProviderSettings::default()
    }]))
    .await;
    let ticket = app.register(&register_body(PHONE)).await;
    sms(&app, &ticket["id"], |d| d["status"] == "SENT").await;
    let url = format!(
        "{}/delivery/receipts/twilio",
        app.core.settings.public_base_url()
    );
    let form = [
        ("MessageSid", "SM42"),
        ("MessageStatus", "delivered"),
        ("AccountSid", "AC123"),
    ];
    let sign = |token: &str| {
        let mut sorted = form.to_vec();
        sorted.sort();
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
        mac.update(url.as_bytes());
        for (k, v) in sorted {
            mac.update(k.as_bytes());
            mac.update(v.as_bytes());
        }
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    };
    let post = |signature: String| {
        app.client
            .post(url.replace(&app.core.settings.public_base_url(), &app.address))
            .header("x-twilio-signature", signature)
            .form(&form)
            .send()
    };
    assert_eq!(
        post(sign("other-token")).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(sms(&app, &ticket["id"], |_| true).await["status"], "SENT");
    assert_eq!(
        post(sign("auth-token")).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    sms(&app, &ticket["id"], |d| d["status"] == "DELIVERED").await;
}

#[tokio::test]
async fn a_provider_that_keeps_failing_is_skipped_until_its_breaker_cools_down() {
    let primary = gateway(503, "").await;
    let backup = gateway(200, "b-1").await;
    let mut first = provider("primary", format!("{}/send", primary.uri()));
    first.failover_after = 1;
    let app = spawn_app_with(|s| {
        providers(vec![
            first,
            provider("backup", format!("{}/send", backup.uri())),
        ])(s);
        s.delivery.sms.breaker_failures = 1;
        s.delivery.sms.breaker_cooldown_seconds = 3600;
    })
    .await;
    let one = app.register(&register_body(PHONE)).await;
    sms(&app, &one["id"], |d| d["status"] == "SENT").await;
    let two = app.register(&register_body("+6281234567891")).await;
    let sent = sms(&app, &two["id"], |d| d["status"] == "SENT").await;
    assert_eq!(sent["provider"], "backup");
    assert_eq!(
        sent["timeline"].as_array().unwrap().len(),
        1,
        "straight to the backup: {sent}"
    );
    assert_eq!(primary.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_single_provider_settings_are_provider_default_with_their_receipt_secret() {
    let gateway = gateway(200, "d-1").await;
    let uri = gateway.uri();
    let app = spawn_app_with(move |s| {
        s.delivery.sms.transport = SmsTransportKind::Webhook;
        s.delivery.sms.webhook.url = format!("{uri}/send");
        s.delivery.sms.receipt_secret = Some(SECRET.to_owned().into());
    })
    .await;
    let ticket = app.register(&register_body(PHONE)).await;
    let sent = sms(&app, &ticket["id"], |d| d["status"] == "SENT").await;
    assert_eq!(sent["provider"], "default");
    let delivered = json!({"messageId": "d-1", "status": "delivered"});
    assert_eq!(
        post_receipt(&app, "default", &delivered, SECRET).await,
        StatusCode::NO_CONTENT
    );
    sms(&app, &ticket["id"], |d| d["status"] == "DELIVERED").await;
}
