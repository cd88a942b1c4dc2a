//! Spawns the real service on port 0 with its own fresh database and a
//! clock the test can move.
use std::{path::Path, sync::Arc, time::Duration as StdDuration};

use customer_registration::{
    clock::ManualClock,
    config::{EmailTransportKind, Settings, SmsTransportKind},
    delivery::{MemoryOutbox, SentMessage},
    service::{
        hosts::{self, AuthenticatedHost},
        registration::{Field, RegisterInput},
    },
    startup::Application,
    state::Core,
};
use entity::{
    outbox_message,
    states::{Channel, OutboxStatus},
};
use md5::{Digest, Md5};
use reqwest::{Response, StatusCode};
use sea_orm::{ColumnTrait, ConnectionTrait, Database, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};

pub struct TestApp {
    pub address: String,
    pub core: Core,
    pub clock: Arc<ManualClock>,
    pub client: reqwest::Client,
    pub token: String,
    memory_outbox: MemoryOutbox,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    _data_dir: tempfile::TempDir,
}

impl Drop for TestApp {
    /// Stops the server so its connection pool closes: a test that spawns
    /// many apps must not exhaust the database server's connections.
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Settings for one test; `tweak` adjusts them before the app starts.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    // `TEST_LOG=1` shows the service's logs (filtered by RUST_LOG) with the
    // test's output; otherwise they are silent.
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.path().to_owned(),
        database_url: fresh_database(data_dir.path()).await,
        ..Default::default()
    };
    settings.delivery.poll_interval_ms = 20;
    shared_test_secrets(&mut settings);
    // Tests read deliveries from memory; those about a transport set their own.
    settings.delivery.email.transport = EmailTransportKind::Memory;
    settings.delivery.sms.transport = SmsTransportKind::Memory;
    tweak(&mut settings);
    let clock = Arc::new(ManualClock::default());
    let app = Application::build(settings, clock.clone())
        .await
        .expect("app builds");
    let address = format!("http://{}", app.local_addr().unwrap());
    let core = app.core.clone();
    let memory_outbox = app.memory_outbox.clone();
    let server = tokio::spawn(app.run());
    let mut test_app = TestApp {
        address,
        core,
        clock,
        client: reqwest::Client::new(),
        token: String::new(),
        memory_outbox,
        server,
        _data_dir: data_dir,
    };
    test_app.token = test_app.new_host_token("host-a").await;
    test_app
}

/// The keys every instance of a test shares; PostgreSQL and MySQL refuse to
/// start without configured ones.
pub fn shared_test_secrets(settings: &mut Settings) {
    settings.secrets.token_key = Some("test-token-key".to_owned().into());
    settings.secrets.password_pepper = Some("test-password-pepper".to_owned().into());
}

/// SQLite in the test's temp dir, or a new database on the server named by
/// `TEST_DATABASE_URL` (PostgreSQL or MySQL/MariaDB), one per test.
pub async fn fresh_database(dir: &Path) -> String {
    let Ok(server) = std::env::var("TEST_DATABASE_URL") else {
        return format!("sqlite://{}?mode=rwc", dir.join("test.db").display());
    };
    let name = format!("cr_test_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(&server)
        .await
        .expect("connect to TEST_DATABASE_URL");
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    admin.close().await.ok();
    let (base, _) = server.rsplit_once('/').expect("URL has a database path");
    format!("{base}/{name}")
}

impl TestApp {
    /// Creates a host through the core and gets its token over HTTP.
    pub async fn new_host_token(&self, name: &str) -> String {
        let credentials = hosts::create_host(&self.core, name).await.expect("host");
        let response = self
            .client
            .post(format!("{}/oauth/token", self.address))
            .basic_auth(&credentials.client_id, Some(&credentials.client_secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.post_as(&self.token, path, body).await
    }

    pub async fn post_as(&self, token: &str, path: &str, body: &Value) -> Response {
        self.client
            .post(format!("{}{path}", self.address))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get(&self, path_and_query: &str) -> Response {
        self.client
            .get(format!("{}{path_and_query}", self.address))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request sent")
    }

    /// The Prometheus text of `/metrics` (no token needed).
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.address))
            .send()
            .await
            .expect("request sent")
            .text()
            .await
            .expect("metrics read")
    }

    pub async fn graphql(&self, query: &str, variables: Value) -> (StatusCode, Value) {
        self.graphql_as(&self.token, query, variables).await
    }

    pub async fn graphql_as(
        &self,
        token: &str,
        query: &str,
        variables: Value,
    ) -> (StatusCode, Value) {
        let response = self
            .post_as(
                token,
                "/graphql",
                &json!({"query": query, "variables": variables}),
            )
            .await;
        let status = response.status();
        (status, response.json().await.expect("GraphQL answers JSON"))
    }

    pub async fn register(&self, body: &Value) -> Value {
        let response = self.post("/b2b/customer/register", body).await;
        assert_eq!(response.status(), StatusCode::OK, "register failed");
        response.json().await.unwrap()
    }

    /// Everything the memory transports delivered so far, in order.
    pub fn outbox(&self) -> Vec<SentMessage> {
        self.memory_outbox.messages()
    }

    fn sms_texts(&self, phone: &str) -> Vec<String> {
        self.outbox()
            .into_iter()
            .filter(|m| m.channel == Channel::Sms && m.recipient == phone)
            .map(|m| m.text)
            .collect()
    }

    /// Waits for the dispatcher to deliver the `nth` SMS (1-based) to the
    /// phone and returns its text.
    pub async fn sms_text(&self, phone: &str, nth: usize) -> String {
        eventually(format!("SMS {nth} to {phone} delivered"), || async {
            self.sms_texts(phone).get(nth - 1).cloned()
        })
        .await
    }

    /// The token in the `nth` SMS to the phone.
    pub async fn sms_token(&self, phone: &str, nth: usize) -> String {
        token_in(&self.sms_text(phone, nth).await)
    }

    /// SMS delivered to the phone so far.
    pub fn sms_count(&self, phone: &str) -> usize {
        self.sms_texts(phone).len()
    }

    /// Waits until `n` emails went out and returns them, oldest first.
    pub async fn emails(&self, n: usize) -> Vec<SentMessage> {
        eventually(format!("{n} emails delivered"), || async {
            let emails: Vec<SentMessage> = self
                .outbox()
                .into_iter()
                .filter(|m| m.channel == Channel::Email)
                .collect();
            (emails.len() >= n).then_some(emails)
        })
        .await
    }

    /// The path (`/complete/…`) of the link in the first delivered email.
    pub async fn completion_link_path(&self) -> String {
        let email = self.emails(1).await.remove(0);
        let link = email
            .text
            .split_whitespace()
            .find(|w| w.contains("/complete/"))
            .expect("link in email");
        link[link.find("/complete/").unwrap()..].to_owned()
    }

    /// Waits until no message waits in the outbox: every send, and the
    /// recording of its result, is done.
    pub async fn outbox_drained(&self) {
        eventually("the outbox to drain", || async {
            let pending = outbox_message::Entity::find()
                .filter(outbox_message::Column::Status.eq(OutboxStatus::Pending))
                .count(&self.core.db)
                .await
                .unwrap();
            (pending == 0).then_some(())
        })
        .await
    }

    /// The id of the host the app was started with (its only one).
    pub async fn host_id(&self) -> uuid::Uuid {
        entity::host::Entity::find()
            .one(&self.core.db)
            .await
            .unwrap()
            .expect("the test app has a host")
            .id
    }

    pub async fn confirm(&self, username: &str, password: &str, token: &str) -> Response {
        self.post(
            "/b2b/customer/register/confirm",
            &json!({"username": username, "password": md5_upper(password), "token": token}),
        )
        .await
    }
}

const DELIVERIES: &str = "query($id: ID!) { registration(id: $id) { deliveries { channel status attempts lastError lastErrorClass providerMessageId sentAt timeline { outcome errorClass error providerMessageId provider } provider } } }";

impl TestApp {
    /// The registration's deliveries as GraphQL shows them.
    pub async fn deliveries(&self, id: &Value) -> Vec<Value> {
        let (_, body) = self.graphql(DELIVERIES, json!({"id": id})).await;
        body["data"]["registration"]["deliveries"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("{body}"))
    }

    /// Waits until the registration's delivery on `channel` (`SMS` or
    /// `EMAIL`) satisfies `done`.
    pub async fn wait_for_delivery(
        &self,
        id: &Value,
        channel: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        eventually(
            format!("the {channel} delivery in the expected state"),
            || async {
                self.deliveries(id)
                    .await
                    .into_iter()
                    .find(|d| d["channel"] == channel)
                    .filter(|d| done(d))
            },
        )
        .await
    }
}

/// Polls `check` every 20 ms until it yields a value, for up to 10 s, then
/// fails naming `what` was awaited. Every wait in the tests goes through it.
/// The token (three letters, then digits) in an SMS text.
pub fn token_in(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .find(|w| {
            w.len() >= 7
                && w[..3].bytes().all(|b| b.is_ascii_uppercase())
                && w[3..].bytes().all(|b| b.is_ascii_digit())
        })
        .unwrap_or_else(|| panic!("no token in {text:?}"))
        .to_owned()
}

pub async fn eventually<T, Fut>(what: impl std::fmt::Display, mut check: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + StdDuration::from_secs(10);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if std::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

pub fn md5_upper(password: &str) -> String {
    hex_upper(&Md5::digest(password.as_bytes()))
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// A valid register body: the legacy sample with its JSON mistakes fixed.
pub fn register_body(phone: &str) -> Value {
    json!({
        "phone": phone,
        "name": "Septian Cahyo",
        "birthDate": "1990-12-31",
        "birthPlace": "Jakarta",
        "email": format!("{}@example.com", phone.trim_start_matches('+')),
        "gender": true,
        "countryId": "ID",
        "sourceId": "01011",
        "accountGroupId": "01"
    })
}

/// Reads the error body and checks its status and code.
pub async fn assert_error(response: Response, status: StatusCode, code: &str) -> Value {
    let actual = response.status();
    let body: Value = response.json().await.expect("error body is JSON");
    assert_eq!(actual, status, "body: {body}");
    assert_eq!(body["code"], code, "body: {body}");
    body
}

/// A 429 `SEND_QUOTA_EXCEEDED` whose message names `quota` (`"host-phone
/// sms quota"`, `"monthly SMS budget"`, ...); its body.
pub async fn assert_quota_refused(response: Response, quota: &str) -> Value {
    let body = assert_error(
        response,
        StatusCode::TOO_MANY_REQUESTS,
        "SEND_QUOTA_EXCEEDED",
    )
    .await;
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(quota), "{body}");
    body
}

pub fn gql_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("<none>")
}

pub const PHONE: &str = "+6281234567890";

/// A register with email of `phone`, for the core's use case called
/// directly (`registration::register`), as `register_body` is for REST.
pub fn register_input(phone: &str) -> RegisterInput {
    let field = |value: &str| Field::Present(value.to_owned());
    RegisterInput {
        phone: field(phone),
        name: field("Septian Cahyo"),
        birth_date: field("1990-12-31"),
        birth_place: field("Jakarta"),
        email: field(&format!("{}@example.com", phone.trim_start_matches('+'))),
        gender: Field::Present(true),
        country_id: field("ID"),
        source_id: field("01011"),
        account_group_id: field("01"),
        language: Field::Absent,
    }
}

/// The app's bootstrapped host, authenticated as its token's requests are.
pub async fn authenticated_host(app: &TestApp) -> AuthenticatedHost {
    hosts::authenticate(&app.core, Some(&format!("Bearer {}", app.token)))
        .await
        .unwrap()
}

/// The sends counted by each `send_quota` counter whose scope is like
/// `scope` (SQL's `LIKE`: `%` any text, `_` one character;
/// [`recipient_scope`] and [`host_recipient_scope`] for a recipient's
/// two), a counter's rows added up, in the order of their scopes.
pub async fn quota_counts(app: &TestApp, scope: &str) -> Vec<i32> {
    use entity::send_quota::Column;
    use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
    // A host's and the global scopes count in rows of their own
    // (`scope#N@limit`), beside the scope's row that grants their allowances.
    // The columns are named: tests that undo migrations read tables older
    // than the entity.
    let rows: Vec<(String, chrono::DateTime<chrono::Utc>, i32)> =
        entity::send_quota::Entity::find()
            .select_only()
            .columns([Column::Scope, Column::WindowStart, Column::Used])
            .filter(
                Condition::any()
                    .add(Column::Scope.like(scope))
                    .add(Column::Scope.like(format!("{scope}#%"))),
            )
            .order_by_asc(Column::Scope)
            .into_tuple()
            .all(&app.core.db)
            .await
            .unwrap();
    let mut counts = std::collections::BTreeMap::<(String, _), i32>::new();
    for (scope, window_start, used) in rows {
        let base = match scope.rsplit_once('#') {
            Some((base, _)) => base.to_owned(),
            None => scope.clone(),
        };
        *counts.entry((base, window_start)).or_default() += used;
    }
    counts.into_values().collect()
}

/// Undoes the migration `name` and every later one (`Migrator::up` redoes
/// them).
pub async fn migrate_down_through(db: &sea_orm::DatabaseConnection, name: &str) {
    use migration::{Migrator, MigratorTrait};
    let steps = Migrator::migrations()
        .iter()
        .rev()
        .position(|m| m.name() == name)
        .expect("a migration of that name")
        + 1;
    Migrator::down(db, Some(steps as u32)).await.unwrap();
}

/// The scopes of `channel`'s counters per recipient (a 32-character hash).
pub fn recipient_scope(channel: &str) -> String {
    format!("{channel}:recipient:{}", "_".repeat(32))
}

/// The scopes of `channel`'s counters per host and recipient (a hash and
/// a host id of 32 characters each).
pub fn host_recipient_scope(channel: &str) -> String {
    let hex = "_".repeat(32);
    format!("{channel}:recipient:{hex}:host:{hex}")
}

/// The plan the database makes for `statement`, one line per step
/// (PostgreSQL's `EXPLAIN`, SQLite's `EXPLAIN QUERY PLAN`).
pub async fn query_plan(
    db: &sea_orm::DatabaseConnection,
    mut statement: sea_orm::Statement,
) -> String {
    use sea_orm::{ConnectionTrait, DbBackend};
    let (explain, column) = match statement.db_backend {
        DbBackend::Postgres => ("EXPLAIN", "QUERY PLAN"),
        _ => ("EXPLAIN QUERY PLAN", "detail"),
    };
    statement.sql = format!("{explain} {}", statement.sql);
    db.query_all_raw(statement)
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get::<String>("", column).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}
