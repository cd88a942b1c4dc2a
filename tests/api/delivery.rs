//! Email over real SMTP, templates and language, retries, dead letters and
//! the delivery timeline.
use std::net::TcpListener;

use chrono::Duration;
use customer_registration::{
    clock::Clock,
    config::{EmailTransportKind, Settings, SmsTransportKind, SmtpTls},
    service::request_limits,
};
use entity::{outbox_message, states::OutboxStatus};
use mail_parser::MessageParser;
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};

use crate::{
    helpers::{
        PHONE, TestApp, assert_error, eventually, md5_upper, query_plan, register_body,
        spawn_app_with, token_in,
    },
    smtp::{SmtpSink, free_port},
};

fn smtp_to(port: u16) -> impl FnOnce(&mut Settings) {
    move |s: &mut Settings| {
        s.delivery.email.transport = EmailTransportKind::Smtp;
        s.delivery.email.smtp.host = "127.0.0.1".into();
        s.delivery.email.smtp.port = port;
        s.delivery.email.smtp.tls = SmtpTls::None;
        s.delivery.email.smtp.timeout_seconds = 2;
        s.delivery.from = "Wallet Sign-up <signup@wallet.test>".into();
        s.delivery.reply_to = "Support <help@wallet.test>".into();
        s.public_base_url = "https://wallet.test/".into();
    }
}

async fn app_with_smtp() -> (TestApp, SmtpSink) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sink = SmtpSink::start(listener);
    (spawn_app_with(smtp_to(port)).await, sink)
}

async fn wait_for_email_delivery(
    app: &TestApp,
    id: &Value,
    done: impl Fn(&Value) -> bool,
) -> Value {
    app.wait_for_delivery(id, "EMAIL", done).await
}

#[tokio::test]
async fn email_goes_out_over_smtp_as_multipart_with_a_working_link() {
    let (app, sink) = app_with_smtp().await;
    let mut body = register_body(PHONE);
    body["name"] = json!("Ann <b>& Co</b>");
    body["countryId"] = json!("ID");
    body["language"] = json!("en");
    let ticket = app.register(&body).await;
    let raw = sink.wait_for(1).await;
    let email = MessageParser::default().parse(&raw[0]).unwrap();

    assert_eq!(email.subject(), Some("Complete your registration"));
    let from = email.from().unwrap().first().unwrap();
    assert_eq!(from.address(), Some("signup@wallet.test"));
    assert_eq!(from.name(), Some("Wallet Sign-up"));
    assert_eq!(
        email.reply_to().unwrap().first().unwrap().address(),
        Some("help@wallet.test")
    );
    assert_eq!(
        email.to().unwrap().first().unwrap().address(),
        Some("6281234567890@example.com")
    );
    let message_id = email.message_id().expect("Message-ID").to_owned();
    assert!(message_id.ends_with("@wallet.test"), "{message_id}");
    assert_eq!(email.text_body_count(), 1);
    assert_eq!(email.html_body_count(), 1);
    let text = email.body_text(0).unwrap().into_owned();
    let html = email.body_html(0).unwrap().into_owned();
    assert!(text.contains("Hello Ann <b>& Co</b>,"), "{text}");
    assert!(
        html.contains("Ann &lt;b&gt;&amp; Co&lt;"),
        "HTML escapes: {html}"
    );
    assert!(!html.contains("<b>&"));

    let link = text
        .split_whitespace()
        .find(|w| w.starts_with("https://wallet.test/complete/"))
        .expect("link in text part")
        .to_owned();
    // minijinja escapes `/` as `&#x2f;` in HTML, which browsers read back as `/`.
    assert!(
        html.replace("&#x2f;", "/").contains(&link),
        "the HTML part carries the same link"
    );
    let path = link.trim_start_matches("https://wallet.test");
    let page = app
        .client
        .get(format!("{}{path}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(page.contains("+62 812-****-7890"), "{page}");
    assert!(page.contains(ticket["tokenPrefix"].as_str().unwrap()));
    let unknown = app
        .client
        .get(format!("{}/complete/nope", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    let delivery = wait_for_email_delivery(&app, &ticket["id"], |d| d["status"] == "SENT").await;
    assert_eq!(delivery["attempts"], 1);
    assert_eq!(delivery["providerMessageId"], format!("<{message_id}>"));
    assert_eq!(
        delivery["timeline"],
        json!([{"outcome": "sent", "errorClass": null, "error": null, "providerMessageId": format!("<{message_id}>"), "provider": null}])
    );
    // Bodies carrying the link are erased once sent.
    let stored = outbox_message::Entity::find()
        .all(&app.core.db)
        .await
        .unwrap();
    assert!(
        stored
            .iter()
            .all(|m| m.body.is_none() && m.html_body.is_none())
    );
}

#[tokio::test]
async fn language_follows_input_then_country_then_default() {
    let (app, sink) = app_with_smtp().await;
    // Indonesia without a language: Bahasa Indonesia, SMS included.
    app.register(&register_body(PHONE)).await;
    let raw = sink.wait_for(1).await;
    let email = MessageParser::default().parse(&raw[0]).unwrap();
    assert_eq!(email.subject(), Some("Selesaikan pendaftaran Anda"));
    assert!(email.body_text(0).unwrap().contains("Halo Septian Cahyo"));
    assert!(app.sms_text(PHONE, 1).await.contains("kode registrasi"));

    let mut english = register_body("+6281234567891");
    english["language"] = json!("EN-us");
    app.register(&english).await;
    assert!(
        app.sms_text("+6281234567891", 1)
            .await
            .contains("is your registration code")
    );

    let mut unknown = register_body("+6281234567892");
    unknown["language"] = json!("fr");
    let response = app.post("/b2b/customer/register", &unknown).await;
    let body = assert_error(response, StatusCode::BAD_REQUEST, "VALIDATION_FAILED").await;
    assert_eq!(body["details"][0]["field"], "language");
    assert_eq!(body["details"][0]["code"], "unsupported_language");
}

#[tokio::test]
async fn register_succeeds_with_smtp_down_and_the_mail_goes_out_when_it_returns() {
    let port = free_port();
    let app = spawn_app_with(smtp_to(port)).await;
    let ticket = app.register(&register_body(PHONE)).await;
    let failed =
        wait_for_email_delivery(&app, &ticket["id"], |d| d["attempts"].as_u64() >= Some(1)).await;
    assert_eq!(failed["status"], "PENDING");
    assert_eq!(failed["lastErrorClass"], "transient");

    let sink = SmtpSink::start(TcpListener::bind(("127.0.0.1", port)).unwrap());
    app.clock.advance(Duration::minutes(30));
    sink.wait_for(1).await;
    let delivery = wait_for_email_delivery(&app, &ticket["id"], |d| d["status"] == "SENT").await;
    let outcomes: Vec<&str> = delivery["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.last(), Some(&"sent"));
    assert!(
        outcomes[..outcomes.len() - 1]
            .iter()
            .all(|o| *o == "failed"),
        "{outcomes:?}"
    );
    assert_eq!(sink.count(), 1, "sent exactly once");
}

#[tokio::test]
async fn smtp_5xx_is_permanent_and_the_dead_message_keeps_no_link() {
    let (app, sink) = app_with_smtp().await;
    sink.refuse_with(550, "mailbox unavailable");
    let ticket = app.register(&register_body(PHONE)).await;
    let dead = wait_for_email_delivery(&app, &ticket["id"], |d| d["status"] == "DEAD").await;
    assert_eq!(dead["attempts"], 1, "no retry after a permanent failure");
    assert_eq!(dead["lastErrorClass"], "permanent");
    let row = outbox_message::Entity::find()
        .filter(outbox_message::Column::Status.eq(OutboxStatus::Dead))
        .one(&app.core.db)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.body, row.html_body),
        (None, None),
        "the link died with it"
    );

    // Nothing is left to requeue; a resend issues a new link instead.
    let retried = customer_registration::service::outbox::retry_dead(&app.core, Some(row.id))
        .await
        .unwrap_err();
    assert_eq!(retried.field_errors()[0].code, "content_erased");
    sink.accept();
    app.clock.advance(Duration::seconds(61));
    let resent = app
        .post(
            "/b2b/customer/resend/registration/email",
            &json!({"username": PHONE, "phone": PHONE}),
        )
        .await;
    assert_eq!(resent.status(), StatusCode::OK);
    let mails = sink.wait_for(1).await;
    assert_eq!(mails.len(), 1);
}

#[tokio::test]
async fn smtp_4xx_is_retried_until_the_attempt_budget_is_spent() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sink = SmtpSink::start(listener);
    sink.refuse_with(451, "try again later");
    let app = spawn_app_with(|s| {
        smtp_to(port)(s);
        s.delivery.max_attempts = 3;
    })
    .await;
    let ticket = app.register(&register_body(PHONE)).await;
    for attempts in 1..=3u64 {
        wait_for_email_delivery(&app, &ticket["id"], |d| {
            d["attempts"].as_u64() == Some(attempts)
        })
        .await;
        app.clock.advance(Duration::minutes(5));
    }
    let dead = wait_for_email_delivery(&app, &ticket["id"], |d| d["status"] == "DEAD").await;
    let classes: Vec<&str> = dead["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["errorClass"].as_str().unwrap())
        .collect();
    assert_eq!(classes, ["transient", "transient", "transient"]);
    assert_eq!(sink.count(), 0);
}

/// A certificate for `localhost`, trusted through `ca_file` like a private CA.
fn localhost_certificate(dir: &std::path::Path) -> (String, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert.display().to_string(), key.display().to_string())
}

fn starttls_to(port: u16, ca_file: &str, password: &str) -> impl FnOnce(&mut Settings) {
    let (ca_file, password) = (ca_file.to_owned(), password.to_owned());
    move |s: &mut Settings| {
        smtp_to(port)(s);
        s.delivery.email.smtp.host = "localhost".into();
        s.delivery.email.smtp.tls = SmtpTls::Starttls;
        s.delivery.email.smtp.ca_file = Some(ca_file.into());
        s.delivery.email.smtp.username = Some("mailer".into());
        s.delivery.email.smtp.password = Some(password.into());
    }
}

#[tokio::test]
async fn starttls_with_a_private_ca_and_login() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = localhost_certificate(dir.path());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sink = SmtpSink::start_tls(listener, &cert, &key, ("mailer", "s3cret"));

    // mailin only accepts AUTH after STARTTLS, so an accepted login proves TLS.
    let app = spawn_app_with(starttls_to(port, &cert, "s3cret")).await;
    let ticket = app.register(&register_body(PHONE)).await;
    let first =
        wait_for_email_delivery(&app, &ticket["id"], |d| d["attempts"].as_u64() >= Some(1)).await;
    assert_eq!(first["status"], "SENT", "{first}");
    sink.wait_for(1).await;

    // Wrong credentials: the server's 535 is permanent.
    let refused = spawn_app_with(starttls_to(port, &cert, "wrong")).await;
    let ticket = refused.register(&register_body(PHONE)).await;
    let dead = wait_for_email_delivery(&refused, &ticket["id"], |d| d["status"] == "DEAD").await;
    assert_eq!(dead["lastErrorClass"], "permanent");
    assert!(
        dead["lastError"].as_str().unwrap().contains("535"),
        "{dead}"
    );
    assert!(
        !dead.to_string().contains("wrong"),
        "the password is not in the error"
    );
    assert_eq!(sink.count(), 1);
}

#[tokio::test]
async fn a_server_certificate_nobody_vouches_for_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = localhost_certificate(dir.path());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sink = SmtpSink::start_tls(listener, &cert, &key, ("mailer", "s3cret"));
    let app = spawn_app_with(|s| {
        starttls_to(port, &cert, "s3cret")(s);
        s.delivery.email.smtp.ca_file = None;
    })
    .await;
    let ticket = app.register(&register_body(PHONE)).await;
    let failed =
        wait_for_email_delivery(&app, &ticket["id"], |d| d["attempts"].as_u64() >= Some(1)).await;
    assert_eq!(
        failed["status"], "PENDING",
        "a TLS failure is retried, not sent in clear"
    );
    assert_eq!(sink.count(), 0);
}

#[tokio::test]
async fn insecure_smtp_is_refused_for_remote_hosts() {
    let mut settings = Settings::default();
    smtp_to(25)(&mut settings);
    settings.delivery.email.smtp.host = "mail.example.com".into();
    let error = settings.validate().unwrap_err().to_string();
    assert!(error.contains("loopback"), "{error}");
}

#[tokio::test]
async fn deliveries_of_a_page_are_loaded_in_two_queries() {
    let app = spawn_app_with(|s| s.delivery.poll_interval_ms = 3_600_000).await;
    for i in 0..6 {
        app.register(&register_body(&format!("+62812345678{i:02}")))
            .await;
    }
    app.outbox_drained().await;
    // Request counts wait up to 100 ms to be stored: store them now.
    request_limits::sync(&app.core).await.unwrap();
    let before = app.core.metrics.db_statements();
    let (_, body) = app
        .graphql(
            "{ registrations(first: 6) { items { deliveries { status timeline { outcome } } } } }",
            json!({}),
        )
        .await;
    let statements = app.core.metrics.db_statements() - before;
    let items = body["data"]["registrations"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 6);
    assert!(
        items
            .iter()
            .all(|i| i["deliveries"].as_array().unwrap().len() == 2)
    );
    // The page, all deliveries, all timelines (the bearer token, used by
    // earlier requests, comes from the token cache).
    assert_eq!(statements, 3, "{body}");
}

#[tokio::test]
async fn metrics_count_requests_deliveries_and_code_checks() {
    let app = spawn_app_with(|_| {}).await;
    app.register(&register_body(PHONE)).await;
    app.outbox_drained().await;
    let wrong = app.confirm(PHONE, "Kopi-Tubruk-42!", "AAA000000").await;
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let response = app
        .client
        .get(format!("{}/metrics", app.address))
        .header("x-request-id", "probe-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "probe-42");
    let metrics = response.text().await.unwrap();
    for expected in [
        r#"registration_deliveries_total{channel="sms",outcome="sent"} 1"#,
        r#"registration_deliveries_total{channel="email",outcome="sent"} 1"#,
        r#"registration_http_requests_total{operation="/b2b/customer/register",transport="rest",status="200"} 1"#,
        r#"registration_http_requests_total{operation="/b2b/customer/register/confirm",transport="rest",status="422"} 1"#,
        r#"registration_http_request_duration_seconds_count{operation="/b2b/customer/register",transport="rest"} 1"#,
        r#"registration_code_checks_total{outcome="wrong"} 1"#,
        r#"registration_outbox_depth{channel="sms"} 0"#,
        "registration_password_hashes_waiting 0",
        "registration_password_hash_memory_bytes ",
        "registration_db_pool_connections ",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing in\n{metrics}"
        );
    }
    // On SQLite the turns at its one writer: the register's, and the
    // delivery's claim and recording (each at least one).
    if app.core.db.get_database_backend() == sea_orm::DbBackend::Sqlite {
        for by in ["request", "delivery"] {
            let turns = format!(r#"registration_sqlite_writer_turns_total{{by="{by}"}} "#);
            let held = format!(r#"registration_sqlite_writer_held_seconds_total{{by="{by}"}} "#);
            let count = metrics
                .lines()
                .find_map(|line| line.strip_prefix(turns.as_str()))
                .unwrap_or_else(|| panic!("{turns} missing in\n{metrics}"));
            assert!(count.trim().parse::<u64>().unwrap() >= 1, "{turns}{count}");
            assert!(metrics.contains(&held), "{held} missing in\n{metrics}");
        }
    }
    // A request without an id gets one, in the response.
    let generated = app.get("/b2b/customer/auth/verifyEmail?email=a@b.co").await;
    assert_eq!(generated.headers()["x-request-id"].len(), 36);
}

/// The development default: what was sent lands in files a person reads,
/// one `.eml` per email and one JSON line per SMS.
#[tokio::test]
async fn file_transports_write_what_a_person_reads() {
    let app = spawn_app_with(|s| {
        s.delivery.email.transport = EmailTransportKind::File;
        s.delivery.sms.transport = SmsTransportKind::File;
    })
    .await;
    app.register(&register_body(PHONE)).await;
    let outbox = app.core.settings.outbox_dir();
    let sms = eventually("the SMS line", || async {
        std::fs::read_to_string(outbox.join("sms.jsonl"))
            .ok()
            .filter(|lines| !lines.is_empty())
    })
    .await;
    let line: Value = serde_json::from_str(sms.lines().next().unwrap()).unwrap();
    assert_eq!(line["to"], PHONE);
    assert!(line["text"].as_str().unwrap().contains("kode"), "{line}");
    let eml = eventually("the .eml file", || async {
        std::fs::read_dir(&outbox)
            .ok()?
            .filter_map(Result::ok)
            .find(|e| e.path().extension().is_some_and(|x| x == "eml"))
            .map(|e| std::fs::read(e.path()).unwrap())
    })
    .await;
    let email = MessageParser::default().parse(&eml).unwrap();
    assert_eq!(
        email.to().unwrap().first().unwrap().address().unwrap(),
        "6281234567890@example.com"
    );
    assert!(email.body_text(0).unwrap().contains("/complete/"));
    assert!(app.outbox().is_empty(), "nothing went to memory");
}

/// A core with memory transports and no delivery loop of its own, on a
/// manual clock, and one host: tests drive dispatch passes themselves.
struct Quiet {
    core: customer_registration::state::Core,
    host: customer_registration::service::hosts::AuthenticatedHost,
    clock: std::sync::Arc<customer_registration::clock::ManualClock>,
    _dir: tempfile::TempDir,
}

impl Quiet {
    async fn new() -> Self {
        Self::with(|_| {}).await
    }

    async fn with(configure: impl FnOnce(&mut Settings)) -> Self {
        use customer_registration::{clock::ManualClock, service::hosts, startup};
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings {
            data_dir: dir.path().to_owned(),
            database_url: crate::helpers::fresh_database(dir.path()).await,
            ..Default::default()
        };
        settings.delivery.email.transport = EmailTransportKind::Memory;
        settings.delivery.sms.transport = SmsTransportKind::Memory;
        crate::helpers::shared_test_secrets(&mut settings);
        configure(&mut settings);
        let clock = std::sync::Arc::new(ManualClock::default());
        let core = startup::build_core(settings, clock.clone()).await.unwrap();
        let credentials = hosts::create_host(&core, "h").await.unwrap();
        let token =
            hosts::issue_access_token(&core, &credentials.client_id, &credentials.client_secret)
                .await
                .unwrap();
        let host = hosts::authenticate(&core, Some(&format!("Bearer {}", token.access_token)))
            .await
            .unwrap();
        Self {
            core,
            host,
            clock,
            _dir: dir,
        }
    }

    /// Registers `phone` (no email): one SMS queued.
    async fn register(&self, phone: &str) {
        use customer_registration::service::{
            client::ClientPresence,
            registration::{self, Field, RegisterInput},
        };
        let text = |v: &str| Field::Present(v.to_owned());
        registration::register(
            &self.core,
            &self.host,
            RegisterInput {
                phone: text(phone),
                name: text("Septian Cahyo"),
                birth_date: text("1990-12-31"),
                birth_place: text("Jakarta"),
                gender: Field::Present(true),
                country_id: text("ID"),
                account_group_id: text("01"),
                ..Default::default()
            },
            &ClientPresence::always_waiting(),
        )
        .await
        .unwrap();
    }
}

/// One pass claims every due message in one statement and records all the
/// sends that finished together in one transaction: a batch costs two
/// commits, not two per message (on SQLite each is a disk flush that
/// registers queue behind).
#[tokio::test]
async fn a_dispatch_pass_claims_and_records_its_batch_together() {
    use customer_registration::{delivery::MemoryOutbox, service::outbox, startup};
    let quiet = Quiet::new().await;
    for phone in ["+6281234567890", "+6281234567891", "+6281234567892"] {
        quiet.register(phone).await;
    }
    let core = &quiet.core;
    let memory = MemoryOutbox::default();
    let dispatcher = startup::dispatcher(core, &memory).unwrap();
    let before = core.metrics.db_statements();
    let report = dispatcher.dispatch_due().await.unwrap();
    let statements = core.metrics.db_statements() - before;
    assert_eq!(report.sent, 3);
    assert_eq!(memory.messages().len(), 3);
    // The due list, the claim, the claimed rows and the three results in
    // one update: 4 (MySQL: one update per result, 6). A send that went
    // through has no timeline row of its own (its message holds it). One
    // message at a time it was 13 (a claim, a read, a result and a
    // timeline entry each).
    let expected = if core.db.get_database_backend() == sea_orm::DbBackend::MySql {
        6
    } else {
        4
    };
    assert_eq!(statements, expected);
    // Each message is recorded with its own values.
    let rows = outbox_message::Entity::find().all(&core.db).await.unwrap();
    assert_eq!(rows.len(), 3);
    let sent_ids = memory
        .messages()
        .iter()
        .map(|m| m.id)
        .collect::<std::collections::HashSet<_>>();
    for row in &rows {
        assert_eq!(row.status, OutboxStatus::Sent);
        assert_eq!(row.attempts, 1);
        assert!(row.lease_token.is_none() && row.lease_until.is_none());
        assert!(row.body.is_none(), "a sent message keeps no code");
        assert!(sent_ids.contains(&row.id), "{} was sent", row.id);
        assert_eq!(
            row.provider_message_id.as_deref(),
            Some(row.id.to_string().as_str()),
            "the id the transport gave for this message"
        );
    }
    let distinct = rows
        .iter()
        .map(|r| r.provider_message_id.clone())
        .collect::<std::collections::HashSet<_>>();
    assert_eq!(distinct.len(), 3, "each message has its own provider id");
    let mut sends = sends_in_the_timelines(core).await;
    sends.sort();
    let mut expected = rows
        .iter()
        .map(|r| (r.id, r.provider_message_id.clone()))
        .collect::<Vec<_>>();
    expected.sort();
    assert_eq!(sends, expected, "every send is in the timeline");
    let attempt_rows = entity::delivery_attempt::Entity::find()
        .all(&core.db)
        .await
        .unwrap();
    assert!(
        attempt_rows.is_empty(),
        "no row of its own: {attempt_rows:?}"
    );
    assert!(
        outbox::due(core, quiet.clock.now(), 10)
            .await
            .unwrap()
            .is_empty(),
        "nothing left to send"
    );
}

/// The delivery loop claims more due messages in the transaction that
/// records the sends that came back, not in one of its own: on SQLite each
/// transaction is a turn at the one writer that registers queue for. Six
/// messages two at a time: a claim, then three recordings, the first two
/// each claiming the next two (six turns when every claim took its own).
#[tokio::test]
async fn the_delivery_loop_claims_in_the_turn_that_records() {
    use customer_registration::{delivery::MemoryOutbox, metrics::WriterUse, startup};
    use sea_orm::PaginatorTrait;
    let quiet = Quiet::with(|settings| settings.delivery.batch_size = 2).await;
    for last in 0..6 {
        quiet.register(&format!("+628123456789{last}")).await;
    }
    let core = &quiet.core;
    let memory = MemoryOutbox::default();
    let dispatcher = startup::dispatcher(core, &memory).unwrap();
    let turns_before = core.metrics.writer_turns(WriterUse::Delivery);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(dispatcher.run(stopping));
    let all_sent = async {
        loop {
            let sent = outbox_message::Entity::find()
                .filter(outbox_message::Column::Status.eq(OutboxStatus::Sent))
                .count(&core.db)
                .await
                .unwrap();
            if sent == 6 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), all_sent)
        .await
        .expect("six messages sent and recorded");
    stop.send(true).unwrap();
    running.await.unwrap();
    assert_eq!(memory.messages().len(), 6, "each message went once");
    assert_eq!(sends_in_the_timelines(core).await.len(), 6, "one send each");
    // The writer's turns are SQLite's; elsewhere there is no such queue.
    if core.db.get_database_backend() == sea_orm::DbBackend::Sqlite {
        assert_eq!(
            core.metrics.writer_turns(WriterUse::Delivery) - turns_before,
            4
        );
    }
}

/// A message cancelled between the two halves of a claim (a resend
/// replaced its code after the lease was taken, before the leased rows were
/// read) is left out; the rest of the batch goes out. It used to fail the
/// whole claim ("pending outbox message has no body"), leaving every other
/// message of the batch leased, and so unsent, until its lease ran out.
#[tokio::test]
async fn a_message_cancelled_while_being_claimed_is_left_out_and_the_rest_go() {
    use customer_registration::service::outbox::{self, CancelReason};
    use sea_orm::{ColumnTrait, QueryFilter};
    let quiet = Quiet::new().await;
    quiet.register(PHONE).await;
    quiet.register("+6281234567891").await;
    let (core, clock) = (&quiet.core, &quiet.clock);
    let due = outbox::due(core, clock.now(), 10).await.unwrap();
    assert_eq!(due.len(), 2, "one SMS for each registration");
    let token = outbox::take_leases(core, &due)
        .await
        .unwrap()
        .expect("both were free to lease");
    let replaced = entity::registration::Entity::find()
        .filter(entity::registration::Column::Phone.eq(PHONE))
        .one(&core.db)
        .await
        .unwrap()
        .unwrap();
    let cancelled = outbox::cancel_pending(
        &core.db,
        &[replaced.id],
        None,
        CancelReason::Superseded,
        clock.now(),
    )
    .await
    .unwrap();
    assert_eq!(cancelled, 1, "a leased message can still be cancelled");
    let claimed = outbox::leased(core, &due, token).await.unwrap();
    assert_eq!(claimed.len(), 1, "only the message still pending");
    assert_eq!(claimed[0].recipient, "+6281234567891");
}

/// Two dispatchers, one stalled past its lease: the other takes the message
/// over and only the holder of the lease records a result.
#[tokio::test]
async fn a_result_is_recorded_only_while_the_lease_holds() {
    use customer_registration::{
        delivery::MemoryOutbox,
        service::outbox::{self, Recorded, SendOutcome, SendResult},
        startup,
    };
    let quiet = Quiet::new().await;
    quiet.register(PHONE).await;
    let (core, clock) = (&quiet.core, &quiet.clock);
    let due = outbox::due(core, clock.now(), 10).await.unwrap();
    assert_eq!(due.len(), 1, "one SMS queued");
    let stalled = outbox::claim_batch(core, &due)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert!(
        outbox::claim_batch(core, &due).await.unwrap().is_empty(),
        "a held lease is not claimed twice"
    );
    clock.advance(Duration::minutes(2));
    let memory = MemoryOutbox::default();
    let report = startup::dispatcher(core, &memory)
        .unwrap()
        .dispatch_due()
        .await
        .unwrap();
    assert_eq!(report.sent, 1, "the expired lease was taken over");
    let late_send = SendResult::Sent {
        provider_message_id: "late".into(),
    };
    let late = SendOutcome {
        message: &stalled,
        carrier: None,
        result: &late_send,
    };
    let recorded = outbox::record_results(core, &[late], clock.now())
        .await
        .unwrap();
    assert_eq!(recorded, [Recorded::LeaseLost]);
    let stored = outbox_message::Entity::find_by_id(due[0])
        .one(&core.db)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(stored.provider_message_id.as_deref(), Some("late"));
    assert_eq!(
        sends_in_the_timelines(core).await,
        [(due[0], stored.provider_message_id.clone())],
        "only the holder's result is in the timeline"
    );
    assert_eq!(memory.messages().len(), 1);
}

/// Sends recorded together are recorded each under its own lease: one taken
/// over meanwhile keeps the new holder's outcome, the others are stored
/// with their own provider ids and carriers.
#[tokio::test]
async fn sends_recorded_together_each_keep_to_their_own_lease() {
    use customer_registration::service::outbox::{
        self, Carrier, Recorded, SendOutcome, SendResult,
    };
    let quiet = Quiet::new().await;
    for phone in ["+6281234567890", "+6281234567891", "+6281234567892"] {
        quiet.register(phone).await;
    }
    let (core, clock) = (&quiet.core, &quiet.clock);
    let due = outbox::due(core, clock.now(), 10).await.unwrap();
    let stalled = outbox::claim_batch(core, &due).await.unwrap();
    assert_eq!(stalled.len(), 3);
    // The first one's lease runs out and another dispatcher takes it.
    clock.advance(Duration::minutes(2));
    let taken_over = outbox::claim_batch(core, &[stalled[0].id]).await.unwrap();
    assert_eq!(taken_over.len(), 1);
    let results: Vec<SendResult> = (0..3)
        .map(|i| SendResult::Sent {
            provider_message_id: format!("late-{i}"),
        })
        .collect();
    let carrier = Carrier {
        provider: "alpha".into(),
        failures_here: 2,
        failover_to: None,
        keep_body: false,
    };
    let outcomes: Vec<SendOutcome<'_>> = stalled
        .iter()
        .zip(&results)
        .enumerate()
        .map(|(i, (message, result))| SendOutcome {
            message,
            carrier: (i == 1).then_some(&carrier),
            result,
        })
        .collect();
    let recorded = outbox::record_results(core, &outcomes, clock.now())
        .await
        .unwrap();
    assert_eq!(
        recorded,
        [Recorded::LeaseLost, Recorded::Sent, Recorded::Sent]
    );
    let stored = |id| async move {
        outbox_message::Entity::find_by_id(id)
            .one(&core.db)
            .await
            .unwrap()
            .unwrap()
    };
    let lost = stored(stalled[0].id).await;
    assert_eq!(
        lost.status,
        OutboxStatus::Pending,
        "the new holder's to record"
    );
    assert_eq!(lost.lease_token, Some(taken_over[0].lease_token));
    assert!(lost.provider_message_id.is_none() && lost.body.is_some());
    for (i, message) in stalled.iter().enumerate().skip(1) {
        let row = stored(message.id).await;
        assert_eq!(row.status, OutboxStatus::Sent);
        assert_eq!(row.attempts, 1);
        let sent_at = row.sent_at.expect("sent at");
        assert!((sent_at - clock.now()).num_milliseconds().abs() < 1);
        assert!(row.lease_token.is_none() && row.lease_until.is_none());
        assert!(row.body.is_none() && row.html_body.is_none());
        assert_eq!(
            row.provider_message_id.as_deref(),
            Some(format!("late-{i}").as_str())
        );
        let provider = (i == 1).then_some("alpha");
        assert_eq!(
            (row.provider.as_deref(), row.provider_failures),
            (provider, 0)
        );
    }
    assert_eq!(
        sends_in_the_timelines(core).await.len(),
        2,
        "only the two recorded sends are in the timeline"
    );
}

/// A host's SMS carry the Android app hash and, last, the WebOTP line, so
/// browsers and apps fill the code in; resends too.
#[tokio::test]
async fn a_hosts_sms_are_ready_for_autofill() {
    let app = crate::helpers::spawn_app().await;
    customer_registration::service::hosts::set_autofill(
        &app.core,
        "host-a",
        Some("wallet.example"),
        Some("FA+9qCX9VSu"),
    )
    .await
    .unwrap();
    // The host's token was issued before: autofill is read per request.
    app.register(&register_body(PHONE)).await;
    let text = app.sms_text(PHONE, 1).await;
    let token = app.sms_token(PHONE, 1).await;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[lines.len() - 1],
        format!("@wallet.example #{token}"),
        "{text}"
    );
    assert_eq!(lines[lines.len() - 2], "FA+9qCX9VSu", "{text}");

    // Another host's SMS carry neither.
    let other = app.new_host_token("host-b").await;
    let response = app
        .post_as(
            &other,
            "/b2b/customer/register",
            &register_body("+6281298765432"),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let plain = app.sms_text("+6281298765432", 1).await;
    assert!(
        !plain.contains("@wallet.example") && !plain.contains("FA+9qCX9VSu"),
        "{plain}"
    );

    // Bad settings are named; settings that would split the SMS are refused.
    let bad = customer_registration::service::hosts::set_autofill(
        &app.core,
        "host-a",
        Some("https://wallet.example"),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(bad.field_errors()[0].field, "webotpDomain");
    let label = "a".repeat(60);
    let long_domain = format!("{label}.{label}.{label}.example");
    let too_long = customer_registration::service::hosts::set_autofill(
        &app.core,
        "host-a",
        Some(&long_domain),
        None,
    )
    .await
    .unwrap_err();
    assert_eq!(too_long.field_errors()[0].code, "sms_too_long");
}

/// Waking the delivery loop costs it a query for due messages, so a confirm
/// wakes it only when it queued an event for the host's endpoint: a
/// completion, or the wrong code that locks the registration.
#[tokio::test]
async fn a_confirm_wakes_delivery_only_for_an_event_it_queued() {
    use customer_registration::{
        delivery::MemoryOutbox,
        error::CoreError,
        service::{
            client::ClientPresence,
            registration::{self, ConfirmInput, Field},
            webhooks,
        },
        startup,
    };
    use futures::FutureExt;
    let quiet = Quiet::new().await;
    let core = &quiet.core;
    let memory = MemoryOutbox::default();
    let dispatcher = startup::dispatcher(core, &memory).unwrap();
    let woken = || core.outbox_signal.notified().now_or_never().is_some();
    let code_sent_to = |phone: &str| {
        let sent = memory.messages();
        token_in(&sent.iter().rfind(|m| m.recipient == phone).unwrap().text)
    };
    let waiting_client = ClientPresence::always_waiting();
    let confirm = |phone: &str, token: &str| {
        registration::confirm(
            core,
            &quiet.host,
            ConfirmInput {
                username: Field::Present(phone.to_owned()),
                password: Field::Present(md5_upper("secret")),
                token: Field::Present(token.to_owned()),
            },
            &waiting_client,
        )
    };
    let wrong = |token: &str| {
        let last = if token.ends_with('0') { '1' } else { '0' };
        format!("{}{last}", &token[..token.len() - 1])
    };

    for (phone, endpoint) in [("+6281234567890", false), ("+6281234567891", true)] {
        if endpoint {
            webhooks::set_endpoint(core, "h", "https://hooks.wallet.test/events")
                .await
                .unwrap();
        }
        quiet.register(phone).await;
        assert!(woken(), "a register wakes delivery for its SMS");
        dispatcher.dispatch_due().await.unwrap();
        let token = code_sent_to(phone);
        let refused = confirm(phone, &wrong(&token)).await.unwrap_err();
        assert!(
            matches!(refused, CoreError::TokenInvalid { .. }),
            "{refused:?}"
        );
        assert!(!woken(), "a wrong code that locks nothing queues nothing");
        confirm(phone, &token).await.unwrap();
        assert_eq!(
            woken(),
            endpoint,
            "woken for the completion event only with an endpoint"
        );
    }

    // Wrong codes until the registration locks: that one queues an event.
    let phone = "+6281234567892";
    quiet.register(phone).await;
    dispatcher.dispatch_due().await.unwrap();
    let wrong_code = wrong(&code_sent_to(phone));
    let _ = woken();
    loop {
        match confirm(phone, &wrong_code).await.unwrap_err() {
            CoreError::TokenInvalid {
                attempts_remaining: 0,
            } => break,
            CoreError::TokenInvalid { .. } => assert!(!woken(), "no event before the lock"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(woken(), "the locking guess queued registration.locked");
}

/// On PostgreSQL the outbox's pages keep room for the claim's new row
/// versions, so a claim adds no index entry (migration
/// `m20261205_000001_outbox_room_for_leases`; measured in
/// docs/PERFORMANCE.md, session 31). Other databases have no such setting.
#[tokio::test]
async fn the_outbox_leaves_room_in_its_pages_for_leases_on_postgres() {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let app = crate::helpers::spawn_app().await;
    let db = &app.core.db;
    if db.get_database_backend() != DbBackend::Postgres {
        return;
    }
    let options = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT array_to_string(reloptions, ',') AS options FROM pg_class \
             WHERE oid = 'outbox_message'::regclass",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<String>("", "options")
        .unwrap();
    assert!(
        options.split(',').any(|o| o == "fillfactor=70"),
        "{options}"
    );
}

/// On PostgreSQL an email's sealed bodies stay in its row: ciphertext does
/// not compress, and at the default target the HTML body went to the TOAST
/// table, a row there and an index entry for every email, deleted again
/// when it was sent (migration `m20261206_000003_outbox_bodies_inline`;
/// docs/PERFORMANCE.md, session 43). The email waits, its SMTP server
/// down, with its bodies.
#[tokio::test]
async fn an_emails_sealed_bodies_stay_in_its_row_on_postgres() {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let app = spawn_app_with(smtp_to(free_port())).await;
    let db = &app.core.db;
    if db.get_database_backend() != DbBackend::Postgres {
        return;
    }
    let mut body = register_body(PHONE);
    // A long name, which the email carries twice, takes the row past the
    // default target whatever the test's link.
    body["name"] = json!("Anastasia Wulandari Kusumaningtyas Purnamasari Setyaningrum");
    app.register(&body).await;
    let read = |sql: &str| db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql));
    let email = read(
        "SELECT pg_column_size(m.*)::bigint AS row_size, length(html_body)::bigint AS html \
         FROM outbox_message m WHERE channel = 'email'",
    )
    .await
    .unwrap()
    .unwrap();
    // Past the default target (about 2 KB), so the setting is what keeps it.
    let row_size = email.try_get::<i64>("", "row_size").unwrap();
    assert!(row_size > 2_100, "{row_size}");
    assert!(email.try_get::<i64>("", "html").unwrap() > 1_000);
    let toast = read(
        "SELECT reltoastrelid::regclass::text AS toast FROM pg_class \
         WHERE oid = 'outbox_message'::regclass",
    )
    .await
    .unwrap()
    .unwrap()
    .try_get::<String>("", "toast")
    .unwrap();
    let moved_out = read(&format!("SELECT count(*) AS n FROM {toast}"))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(moved_out, 0);
}

/// The partial index of due messages serves the due list, and a statement
/// that picks messages by id and checks they are still pending goes by the
/// primary key: through the index it would read every pending entry, and
/// PostgreSQL's custom plans took that path whenever the statistics said
/// few messages were pending (docs/PERFORMANCE.md, session 22). The SQL is
/// that of `outbox::due` and of the claim, with the values written in, as
/// a custom plan sees them. MySQL has no partial indexes.
#[tokio::test]
async fn only_the_due_list_reads_the_index_of_due_messages() {
    use sea_orm::{DbBackend, Statement};
    let app = crate::helpers::spawn_app().await;
    let db = &app.core.db;
    let backend = db.get_database_backend();
    let now = match backend {
        DbBackend::Postgres => "now()",
        DbBackend::Sqlite => "'2026-12-04T00:00:00Z'",
        _ => return,
    };
    if backend == DbBackend::Postgres {
        // Statistics of an outbox of sent messages and none pending: the
        // case where that index looked cheapest for everything.
        app.register(&register_body(PHONE)).await;
        analyse_outbox_copied(db, "sent").await;
    }
    let plan = |sql: String| query_plan(db, Statement::from_string(backend, sql));
    let by_id = plan(format!(
        "UPDATE outbox_message SET lease_until = {now} \
         WHERE id IN ('0193a6a0-0000-7000-8000-000000000001', '0193a6a0-0000-7000-8000-000000000002') \
         AND status = 'pending' AND (lease_until IS NULL OR lease_until < {now})"
    ))
    .await;
    // Whatever the index of due messages is called: none of the outbox's
    // own indexes, the primary key (or a scan of the empty table) instead.
    assert!(!by_id.contains("idx_outbox"), "{by_id}");
    if backend == DbBackend::Sqlite {
        // PostgreSQL's planner reads an empty table whole; SQLite's, with
        // no statistics, takes the index the condition allows.
        let due = plan(format!(
            "SELECT id FROM outbox_message WHERE status = 'pending' AND next_attempt_at <= {now} \
             AND (lease_until IS NULL OR lease_until < {now}) ORDER BY next_attempt_at LIMIT 50"
        ))
        .await;
        assert!(due.contains("idx_outbox_due_pending"), "{due}");
    }
}

#[tokio::test]
async fn a_scrape_counts_waiting_messages_without_walking_the_history() {
    use sea_orm::{ConnectionTrait, DbBackend, QueryTrait, sea_query::Expr};
    let app = spawn_app_with(|_| {}).await;
    app.register(&register_body(PHONE)).await;
    app.outbox_drained().await;
    let db = &app.core.db;
    let now = app.core.clock.now();
    // The email waits again, queued an hour ago and due tomorrow (so the
    // delivery loop leaves it alone).
    outbox_message::Entity::update_many()
        .col_expr(
            outbox_message::Column::Status,
            Expr::value(OutboxStatus::Pending),
        )
        .col_expr(
            outbox_message::Column::NextAttemptAt,
            Expr::value(now + Duration::days(1)),
        )
        .col_expr(
            outbox_message::Column::CreatedAt,
            Expr::value(now - Duration::hours(1)),
        )
        .filter(outbox_message::Column::Channel.eq(entity::states::Channel::Email))
        .exec(db)
        .await
        .unwrap();
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"registration_outbox_depth{channel="email"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"registration_outbox_depth{channel="sms"} 0"#),
        "{metrics}"
    );
    let age: f64 = metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(r#"registration_outbox_oldest_age_seconds{channel="email"} "#)
        })
        .unwrap()
        .parse()
        .unwrap();
    assert!((3_600.0..3_700.0).contains(&age), "{age}");

    if db.get_database_backend() != DbBackend::Postgres {
        return;
    }
    // Statistics taken while a backlog waited, which has since gone out:
    // an ordered walk of the creation index from the oldest message looks
    // cheap, and reads every message kept.
    analyse_outbox_copied(db, "pending").await;
    db.execute_unprepared("UPDATE outbox_message SET status = 'sent'")
        .await
        .unwrap();
    let plan = query_plan(
        db,
        customer_registration::service::outbox::waiting_by_channel_query()
            .build(DbBackend::Postgres),
    )
    .await;
    assert!(!plan.contains("idx_outbox_created"), "{plan}");
}

/// PostgreSQL: a thousand copies of each outbox message with `status`, and
/// statistics taken of them, for the plans a skewed outbox gets.
async fn analyse_outbox_copied(db: &sea_orm::DatabaseConnection, status: &str) {
    use sea_orm::ConnectionTrait;
    db.execute_unprepared(&format!(
        "INSERT INTO outbox_message SELECT (jsonb_populate_record(NULL::outbox_message, \
         to_jsonb(m) || jsonb_build_object('id', gen_random_uuid(), 'status', '{status}'))).* \
         FROM outbox_message m, generate_series(1, 1000)"
    ))
    .await
    .unwrap();
    db.execute_unprepared("ANALYZE outbox_message")
        .await
        .unwrap();
}

/// Every send that went through, as the messages' timelines give them to
/// hosts and operators: the message and the provider's id.
async fn sends_in_the_timelines(
    core: &customer_registration::state::Core,
) -> Vec<(uuid::Uuid, Option<String>)> {
    use customer_registration::service::outbox;
    let messages = outbox_message::Entity::find().all(&core.db).await.unwrap();
    let ids = messages.iter().map(|m| m.id).collect::<Vec<_>>();
    let mut rows = outbox::timeline_rows(core, &ids).await.unwrap();
    messages
        .into_iter()
        .flat_map(|message| {
            let delivery = outbox::Delivery::from(message);
            delivery
                .timeline(rows.remove(&delivery.id).unwrap_or_default())
                .into_iter()
                .filter(|e| e.outcome == entity::states::AttemptOutcome::Sent)
                .map(move |e| (delivery.id, e.provider_message_id))
        })
        .collect()
}
