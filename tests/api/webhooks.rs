//! Signed webhooks to hosts, received by a local endpoint (wiremock) that
//! checks every signature the way a Standard Webhooks library does.
use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::Duration;
use customer_registration::{
    clock::Clock,
    config::{Settings, SmsTransportKind},
    service::webhooks,
};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sha2::Sha256;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

use crate::{
    confirm::wrong,
    helpers::{PHONE, TestApp, eventually, gql_code, register_body, spawn_app, spawn_app_with},
};

/// One webhook as the endpoint received it, its signature checked.
#[derive(Debug)]
pub struct Received {
    pub id: String,
    pub timestamp: i64,
    pub body: Value,
    pub raw: String,
}

/// Registers an endpoint at `server`'s `/hooks` for the host; the secret.
pub async fn endpoint(app: &TestApp, host: &str, server: &MockServer) -> String {
    let created = webhooks::set_endpoint(&app.core, host, &format!("{}/hooks", server.uri()))
        .await
        .expect("endpoint set");
    assert!(created.secret.expose_secret().starts_with("whsec_"));
    created.secret.expose_secret().to_owned()
}

pub async fn answering(status: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks"))
        .respond_with(ResponseTemplate::new(status))
        .mount(&server)
        .await;
    server
}

/// What the endpoint received so far, each signature verified with the
/// secret: HMAC-SHA256 keyed by the base64-decoded part after `whsec_`,
/// over `id.timestamp.body`, as the Standard Webhooks libraries check it.
pub async fn received(server: &MockServer, secret: &str) -> Vec<Received> {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut out = Vec::new();
    let requests = server.received_requests().await.unwrap_or_default();
    // The same server may also play the SMS gateway (`/sms`).
    for request in requests.iter().filter(|r| r.url.path() == "/hooks") {
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .unwrap_or_else(|| panic!("no {name} header"))
                .to_str()
                .unwrap()
                .to_owned()
        };
        let (id, timestamp, signature) = (
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
        );
        assert_eq!(header("content-type"), "application/json");
        let raw = String::from_utf8(request.body.clone()).unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{id}.{timestamp}.{raw}").as_bytes());
        let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        assert!(
            signature.split(' ').any(|s| s == expected),
            "signature {signature} does not verify for {raw}"
        );
        out.push(Received {
            id,
            timestamp: timestamp.parse().unwrap(),
            body: serde_json::from_str(&raw).unwrap(),
            raw,
        });
    }
    out
}

pub async fn wait_received(server: &MockServer, secret: &str, n: usize) -> Vec<Received> {
    eventually(format!("{n} webhooks received"), || async {
        let got = received(server, secret).await;
        (got.len() >= n).then_some(got)
    })
    .await
}

const LIST: &str = "{ webhookDeliveries(first: 10) { items { id webhookId eventType status attempts lastError lastErrorClass createdAt sentAt } nextCursor } }";

async fn listed(app: &TestApp, token: &str) -> Vec<Value> {
    let (status, body) = app.graphql_as(token, LIST, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["webhookDeliveries"]["items"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("{body}"))
}

#[tokio::test]
async fn a_host_hears_of_started_and_completed_registrations_signed() {
    let server = answering(200).await;
    let app = spawn_app().await;
    let secret = endpoint(&app, "host-a", &server).await;

    let ticket = app.register(&register_body(PHONE)).await;
    let token = app.sms_token(PHONE, 1).await;
    let response = app.confirm(PHONE, "s3cret!", &token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let confirmed: Value = response.json().await.unwrap();

    let got = wait_received(&server, &secret, 2).await;
    assert_eq!(got.len(), 2);
    let started = got
        .iter()
        .find(|r| r.body["type"] == "registration.started")
        .expect("registration.started");
    let completed = got
        .iter()
        .find(|r| r.body["type"] == "registration.completed")
        .expect("registration.completed");
    assert_eq!(started.body["data"]["registrationId"], ticket["id"]);
    assert_eq!(started.body["data"]["username"], PHONE);
    assert_eq!(started.body["data"]["status"], "pending");
    assert_eq!(completed.body["data"]["registrationId"], ticket["id"]);
    assert_eq!(completed.body["data"]["status"], "completed");
    assert_eq!(
        completed.body["data"]["customerId"],
        confirmed["customerId"]
    );
    assert!(
        chrono::DateTime::parse_from_rfc3339(completed.body["timestamp"].as_str().unwrap()).is_ok()
    );
    assert_ne!(started.id, completed.id);
    assert!(started.id.starts_with("msg_"), "{}", started.id);
    for r in &got {
        assert!(!r.raw.contains(&token), "a code leaked: {}", r.raw);
        assert!(!r.raw.contains("/complete/"), "a link leaked: {}", r.raw);
        assert_eq!(r.timestamp, app.clock.now().timestamp());
    }
    // The endpoint's answer is recorded just after it arrives.
    let list = eventually("both deliveries recorded as sent", || async {
        let list = listed(&app, &app.token).await;
        list.iter().all(|d| d["status"] == "SENT").then_some(list)
    })
    .await;
    assert_eq!(list.len(), 2);
    // Newest first.
    assert_eq!(list[0]["eventType"], "registration.completed");
}

#[tokio::test]
async fn a_5xx_is_retried_with_the_same_id_and_a_fresh_signature() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .with_priority(2)
        .mount(&server)
        .await;
    let app = spawn_app().await;
    let secret = endpoint(&app, "host-a", &server).await;
    app.register(&register_body(PHONE)).await;

    let first = wait_received(&server, &secret, 1).await;
    let failed = eventually("the first attempt recorded", || async {
        listed(&app, &app.token)
            .await
            .into_iter()
            .find(|d| d["attempts"] == 1 && d["status"] == "PENDING")
    })
    .await;
    assert_eq!(failed["lastErrorClass"], "transient");
    assert!(
        failed["lastError"].as_str().unwrap().contains("503"),
        "{failed}"
    );
    // Past the backoff.
    app.clock.advance(Duration::minutes(1));
    let got = wait_received(&server, &secret, 2).await;
    assert_eq!(got[1].id, first[0].id, "a retry keeps its webhook-id");
    assert_eq!(got[1].raw, first[0].raw);
    assert!(got[1].timestamp >= first[0].timestamp + 60);
    let sent = eventually("the retry recorded", || async {
        listed(&app, &app.token)
            .await
            .into_iter()
            .find(|d| d["status"] == "SENT")
    })
    .await;
    assert_eq!(sent["attempts"], 2);
}

#[tokio::test]
async fn a_4xx_dead_letters_at_once() {
    let server = answering(400).await;
    let app = spawn_app().await;
    let secret = endpoint(&app, "host-a", &server).await;
    app.register(&register_body(PHONE)).await;
    let dead = eventually("the webhook dead-lettered", || async {
        listed(&app, &app.token)
            .await
            .into_iter()
            .find(|d| d["status"] == "DEAD")
    })
    .await;
    assert_eq!(dead["attempts"], 1);
    assert_eq!(dead["lastErrorClass"], "permanent");
    app.clock.advance(Duration::hours(1));
    app.outbox_drained().await;
    assert_eq!(received(&server, &secret).await.len(), 1);
}

#[tokio::test]
async fn no_endpoint_or_a_disabled_one_gets_nothing_and_hosts_get_only_their_own() {
    let server_b = answering(200).await;
    let app = spawn_app().await;
    let token_b = app.new_host_token("host-b").await;
    let secret_b = endpoint(&app, "host-b", &server_b).await;

    // host-a has no endpoint: its registration reaches nobody.
    app.register(&register_body(PHONE)).await;
    app.sms_text(PHONE, 1).await;
    app.outbox_drained().await;
    assert!(listed(&app, &app.token).await.is_empty());
    assert!(received(&server_b, &secret_b).await.is_empty());

    // A disabled endpoint gets nothing either.
    let server_a = answering(200).await;
    let secret_a = endpoint(&app, "host-a", &server_a).await;
    assert!(
        webhooks::disable_endpoint(&app.core, "host-a")
            .await
            .unwrap()
    );
    app.register(&register_body("+6281234567891")).await;
    app.sms_text("+6281234567891", 1).await;
    app.outbox_drained().await;
    assert!(received(&server_a, &secret_a).await.is_empty());
    assert!(listed(&app, &app.token).await.is_empty());

    // host-b's own registration does reach host-b.
    let response = app
        .post_as(
            &token_b,
            "/b2b/customer/register",
            &register_body("+6281234567892"),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let got = wait_received(&server_b, &secret_b, 1).await;
    assert_eq!(got[0].body["data"]["username"], "+6281234567892");
    assert_eq!(listed(&app, &token_b).await.len(), 1);
}

const REPLAY: &str =
    "mutation($id: ID!) { replayWebhookDelivery(id: $id) { id webhookId eventType status } }";

#[tokio::test]
async fn a_host_replays_its_own_deliveries_and_no_one_elses() {
    let server = answering(200).await;
    let app = spawn_app().await;
    let secret = endpoint(&app, "host-a", &server).await;
    app.register(&register_body(PHONE)).await;
    let first = wait_received(&server, &secret, 1).await;
    let original = eventually("the delivery listed as sent", || async {
        listed(&app, &app.token)
            .await
            .into_iter()
            .find(|d| d["status"] == "SENT")
    })
    .await;

    let (_, body) = app.graphql(REPLAY, json!({"id": original["id"]})).await;
    let replay = &body["data"]["replayWebhookDelivery"];
    assert_ne!(replay["id"], original["id"], "{body}");
    assert_eq!(replay["webhookId"], original["webhookId"]);
    assert_eq!(replay["eventType"], "registration.started");
    let got = wait_received(&server, &secret, 2).await;
    assert_eq!(got[1].id, first[0].id, "a replay keeps the webhook-id");
    assert_eq!(got[1].raw, first[0].raw, "a replay sends the same payload");
    assert_eq!(listed(&app, &app.token).await.len(), 2);

    // Another host neither sees nor replays it.
    let token_b = app.new_host_token("host-b").await;
    assert!(listed(&app, &token_b).await.is_empty());
    let (_, body) = app
        .graphql_as(&token_b, REPLAY, json!({"id": original["id"]}))
        .await;
    assert_eq!(gql_code(&body), "WEBHOOK_DELIVERY_NOT_FOUND", "{body}");
    let (_, body) = app
        .graphql(REPLAY, json!({"id": uuid::Uuid::now_v7().to_string()}))
        .await;
    assert_eq!(gql_code(&body), "WEBHOOK_DELIVERY_NOT_FOUND", "{body}");
    app.outbox_drained().await;
    assert_eq!(received(&server, &secret).await.len(), 2);
}

#[tokio::test]
async fn wrong_codes_that_lock_are_reported_once() {
    let server = answering(200).await;
    let app = spawn_app().await;
    let secret = endpoint(&app, "host-a", &server).await;
    let ticket = app.register(&register_body(PHONE)).await;
    let token = app.sms_token(PHONE, 1).await;
    let max = app.core.settings.registration.max_wrong_codes;
    for _ in 0..max {
        app.confirm(PHONE, "s3cret!", &wrong(&token)).await;
    }
    let got = eventually("registration.locked received", || async {
        let got = received(&server, &secret).await;
        got.iter()
            .any(|r| r.body["type"] == "registration.locked")
            .then_some(got)
    })
    .await;
    let locked: Vec<&Received> = got
        .iter()
        .filter(|r| r.body["type"] == "registration.locked")
        .collect();
    assert_eq!(locked[0].body["data"]["registrationId"], ticket["id"]);
    assert_eq!(locked[0].body["data"]["status"], "locked");
    // One event per lock: a further wrong code adds none.
    let before = locked.len();
    app.confirm(PHONE, "s3cret!", &wrong(&token)).await;
    app.outbox_drained().await;
    let after = received(&server, &secret)
        .await
        .iter()
        .filter(|r| r.body["type"] == "registration.locked")
        .count();
    assert_eq!(after, before);
}

#[tokio::test]
async fn a_dead_sms_becomes_message_failed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/sms"))
        .respond_with(ResponseTemplate::new(400).set_body_string("no such number"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/hooks"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let sms_url = format!("{}/sms", server.uri());
    let app = spawn_app_with(move |s: &mut Settings| {
        s.delivery.sms.transport = SmsTransportKind::Webhook;
        s.delivery.sms.timeout_seconds = 1;
        s.delivery.sms.webhook.url = sms_url;
    })
    .await;
    let secret = endpoint(&app, "host-a", &server).await;
    let mut body = register_body(PHONE);
    body.as_object_mut().unwrap().remove("email");
    let ticket = app.register(&body).await;
    let failed = eventually("message.failed received", || async {
        received(&server, &secret)
            .await
            .into_iter()
            .find(|r| r.body["type"] == "message.failed")
    })
    .await;
    let data = &failed.body["data"];
    assert_eq!(data["registrationId"], ticket["id"]);
    assert_eq!(data["channel"], "sms");
    assert_eq!(data["errorClass"], "permanent");
    assert!(data["error"].as_str().unwrap().contains("400"), "{data}");
}

#[tokio::test]
async fn redirects_are_not_followed_and_timeouts_are_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks"))
        .respond_with(
            ResponseTemplate::new(307)
                .insert_header("location", format!("{}/elsewhere", server.uri())),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/elsewhere"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let app = spawn_app().await;
    endpoint(&app, "host-a", &server).await;
    app.register(&register_body(PHONE)).await;
    let dead = eventually("the redirected webhook dead", || async {
        listed(&app, &app.token)
            .await
            .into_iter()
            .find(|d| d["status"] == "DEAD")
    })
    .await;
    assert_eq!(dead["lastErrorClass"], "permanent");
    assert!(
        dead["lastError"].as_str().unwrap().contains("307"),
        "{dead}"
    );
    let requests = server.received_requests().await.unwrap();
    assert!(
        requests.iter().all(|r| r.url.path() == "/hooks"),
        "the redirect was followed"
    );

    let slow = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(std::time::Duration::from_secs(3)))
        .mount(&slow)
        .await;
    let app = spawn_app_with(|s: &mut Settings| s.webhooks.timeout_seconds = 1).await;
    endpoint(&app, "host-a", &slow).await;
    app.register(&register_body(PHONE)).await;
    let failed = eventually("the timed-out attempt recorded", || async {
        listed(&app, &app.token)
            .await
            .into_iter()
            .find(|d| d["attempts"] == 1)
    })
    .await;
    assert_eq!(failed["status"], "PENDING", "{failed}");
    assert_eq!(failed["lastErrorClass"], "transient");
    assert!(
        failed["lastError"].as_str().unwrap().contains("timed out"),
        "{failed}"
    );
    assert!(
        !failed["lastError"].as_str().unwrap().contains(&slow.uri()),
        "the endpoint's URL is kept out of errors: {failed}"
    );
}

/// A provider's receipt reaches the host: `delivered` as
/// `message.delivered`, a final `undelivered` as `message.failed`.
#[tokio::test]
async fn delivery_receipts_are_reported_to_the_host() {
    use entity::{outbox_message, states::Channel as StoredChannel};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

    use crate::sms_providers::post_receipt;

    let server = answering(200).await;
    let app = spawn_app_with(|s| {
        s.delivery.sms.receipt_secret = Some("receipt-secret".to_owned().into());
    })
    .await;
    let secret = endpoint(&app, "host-a", &server).await;
    let first = app.register(&register_body(PHONE)).await;
    let second = app.register(&register_body("+6281234567891")).await;
    app.outbox_drained().await;
    let sms_of = |registration: &Value| {
        let id: uuid::Uuid = registration["id"].as_str().unwrap().parse().unwrap();
        let db = app.core.db.clone();
        async move {
            outbox_message::Entity::find()
                .filter(outbox_message::Column::Channel.eq(StoredChannel::Sms))
                .filter(outbox_message::Column::RegistrationId.eq(id))
                .one(&db)
                .await
                .unwrap()
                .unwrap()
        }
    };
    let delivered = sms_of(&first).await;
    let lost = sms_of(&second).await;
    for (sms, status) in [(&delivered, "delivered"), (&lost, "undelivered")] {
        let receipt = json!({"messageId": sms.provider_message_id, "status": status});
        assert_eq!(
            post_receipt(&app, "default", &receipt, "receipt-secret").await,
            StatusCode::NO_CONTENT
        );
    }
    let events = eventually("both receipts reported", || async {
        let events: Vec<_> = received(&server, &secret)
            .await
            .into_iter()
            .filter(|r| r.body["type"].as_str().unwrap().starts_with("message."))
            .collect();
        (events.len() == 2).then_some(events)
    })
    .await;
    let of = |kind: &str| {
        events
            .iter()
            .find(|r| r.body["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind}: {events:?}"))
            .body["data"]
            .clone()
    };
    let data = of("message.delivered");
    assert_eq!(data["registrationId"], first["id"]);
    assert_eq!(data["messageId"], delivered.id.to_string());
    assert_eq!(data["channel"], "sms");
    assert_eq!(data["status"], "delivered");
    let data = of("message.failed");
    assert_eq!(data["registrationId"], second["id"]);
    assert_eq!(data["messageId"], lost.id.to_string());
}
