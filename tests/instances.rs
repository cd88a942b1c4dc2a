//! Three instances of the real binary on one database, as a load balancer
//! would run them: they bootstrap one host together, take registrations in
//! turn, confirm through another instance than the one that registered
//! (twice at once, with wrong guesses racing), deliver every SMS exactly
//! once through one gateway, and stop cleanly on SIGTERM.
//! SQLite by default; `TEST_DATABASE_URL` (PostgreSQL or MariaDB) gives it a
//! fresh database on that server, as `.ci/run` does. With
//! `TEST_DATABASE_NODES` (a cluster's servers, comma-separated, such as the
//! three Galera nodes `.ci/galera start` prints) each instance talks to its
//! own node: `TEST_DATABASE_URL` names the node the database is made on.
// Tests fail by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::{collections::HashMap, path::Path, process::Stdio, time::Duration};

use md5::{Digest, Md5};
use sea_orm::{ConnectionTrait, Database, EntityTrait};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::method};

const PHONES: usize = 12;

async fn database_url(dir: &Path) -> String {
    let Ok(server) = std::env::var("TEST_DATABASE_URL") else {
        return format!("sqlite://{}?mode=rwc", dir.join("shared.db").display());
    };
    let name = format!("cr_test_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(&server).await.unwrap();
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    admin.close().await.ok();
    let (base, _) = server.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

/// The database URL instance `n` connects to: its own node of the cluster
/// when `TEST_DATABASE_NODES` lists them, else the one database.
fn url_for_instance(database: &str, n: usize) -> String {
    let Ok(nodes) = std::env::var("TEST_DATABASE_NODES") else {
        return database.to_owned();
    };
    let nodes: Vec<&str> = nodes.split(',').map(str::trim).collect();
    let (_, name) = database.rsplit_once('/').unwrap();
    let (node, _) = nodes[n % nodes.len()].rsplit_once('/').unwrap();
    format!("{node}/{name}")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Instance {
    port: u16,
    dir: std::path::PathBuf,
    child: Child,
}

/// Three instances, instance `n` on node `n` when the database has nodes,
/// each ready before this returns.
async fn start_three(
    dir: &Path,
    database: &str,
    gateway: &str,
    settings: &[(&str, &str)],
    client: &reqwest::Client,
) -> Vec<Instance> {
    let instances: Vec<Instance> = (0..3)
        .map(|n| {
            start_with(
                &dir.join(n.to_string()),
                &url_for_instance(database, n),
                gateway,
                free_port(),
                settings,
            )
        })
        .collect();
    for instance in &instances {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(70);
        while ready(client, instance).await != reqwest::StatusCode::OK {
            assert!(
                tokio::time::Instant::now() < deadline,
                "an instance was not ready within 70 s; its log:\n{}",
                instance.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    instances
}

/// `settings` are extra `CR_…` variables for this test's instances.
fn start_with(
    dir: &Path,
    database: &str,
    gateway: &str,
    port: u16,
    settings: &[(&str, &str)],
) -> Instance {
    std::fs::create_dir_all(dir).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_customer-registration"))
        .envs(settings.iter().copied())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--bootstrap-host", "acme"])
        .env("CR_DATA_DIR", dir)
        .env("DATABASE_URL", database)
        .env("CR_SECRETS__TOKEN_KEY", "shared-token-key")
        .env("CR_SECRETS__PASSWORD_PEPPER", "shared-pepper")
        .env("CR_DELIVERY__POLL_INTERVAL_MS", "50")
        // Short transport timeouts (webhooks' too) keep the delivery lease
        // (twice the slowest timeout plus 30 s) short enough to wait out.
        .env("CR_DELIVERY__SMS__TIMEOUT_SECONDS", "1")
        .env("CR_DELIVERY__EMAIL__SMTP__TIMEOUT_SECONDS", "1")
        .env("CR_WEBHOOKS__TIMEOUT_SECONDS", "1")
        .env("CR_AUTH__TOKEN_CACHE_SECONDS", "1")
        .env("CR_DELIVERY__SMS__TRANSPORT", "webhook")
        .env("CR_DELIVERY__SMS__WEBHOOK__URL", gateway)
        .env(
            "CR_DELIVERY__SMS__WEBHOOK__BODY_TEMPLATE",
            r#"{"to": {{ recipient|tojson }}, "text": {{ text|tojson }}, "id": {{ id|tojson }}}"#,
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        // A file, not a pipe nobody reads: a full pipe would stall the
        // instance. Shown when it fails to start or to exit cleanly.
        .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    Instance {
        port,
        dir: dir.to_owned(),
        child,
    }
}

impl Instance {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }
}

/// The warnings and errors the instances logged, for a failure message
/// (after a moment: their log writers flush in the background).
fn trouble(instances: &[Instance]) -> String {
    std::thread::sleep(Duration::from_millis(500));
    instances
        .iter()
        .flat_map(|instance| {
            instance
                .log()
                .lines()
                .filter(|line| !line.contains(" INFO ") && !line.contains("DEBUG"))
                .map(|line| format!("{}: {line}\n", instance.port))
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn eventually<T, F: Future<Output = Option<T>>>(what: &str, check: impl FnMut() -> F) -> T {
    eventually_within(70, what, check).await
}

/// Polls every 50 ms for up to `seconds`.
async fn eventually_within<T, F: Future<Output = Option<T>>>(
    seconds: u64,
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    for _ in 0..seconds * 20 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The test's own reads, on one connection. On a Galera cluster each read
/// waits until its node has applied what the other nodes committed, as the
/// service's reads do; without it a check can read a stale row.
async fn reader(database: &str) -> sea_orm::DatabaseConnection {
    let mut options = sea_orm::ConnectOptions::new(database.to_owned());
    options.max_connections(1).map_sqlx_mysql_pool_opts(|pool| {
        pool.after_connect(|conn, _| {
            Box::pin(async move {
                use sea_orm::sqlx::Executor;
                conn.execute("SET SESSION wsrep_sync_wait = 1").await?;
                Ok(())
            })
        })
    });
    Database::connect(options).await.unwrap()
}

fn applicant(phone: &str) -> Value {
    json!({
        "phone": phone, "name": "Septian Cahyo", "birthDate": "1990-12-31",
        "birthPlace": "Jakarta", "gender": true, "countryId": "ID",
        "accountGroupId": "01"
    })
}

fn md5_upper(password: &str) -> String {
    Md5::digest(password.as_bytes())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// Waits until no message is pending in the outbox.
async fn all_settled(db: &sea_orm::DatabaseConnection, what: &str) {
    eventually(what, || async {
        let pending = entity::outbox_message::Entity::find()
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.status == entity::states::OutboxStatus::Pending)
            .count();
        (pending == 0).then_some(())
    })
    .await;
}

/// A local SMS gateway that accepts every message, and its send URL.
async fn accepting_gateway() -> (MockServer, String) {
    let gateway = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "accepted"})))
        .mount(&gateway)
        .await;
    let url = format!("{}/send", gateway.uri());
    (gateway, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_database_keep_every_guarantee() {
    let dir = tempfile::tempdir().unwrap();
    let database = database_url(dir.path()).await;
    let (gateway, gateway_url) = accepting_gateway().await;
    let client = reqwest::Client::new();
    let instances = start_three(dir.path(), &database, &gateway_url, &[], &client).await;

    // One host for all three, its credentials in one instance's directory.
    let token = host_token(&instances, &client).await;

    // Registrations in turn across the three.
    let phones: Vec<String> = (0..PHONES).map(|i| format!("+62812345670{i:02}")).collect();
    let registers = phones.iter().enumerate().map(|(i, phone)| {
        let (client, token) = (&client, &token);
        let url = instances[i % 3].url("/b2b/customer/register");
        async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&applicant(phone))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    for status in futures::future::join_all(registers).await {
        assert_eq!(status, reqwest::StatusCode::OK);
    }

    // Every SMS reaches the gateway; read each phone's code from it.
    let sent = eventually("every SMS at the gateway", || async {
        let requests = gateway.received_requests().await.unwrap_or_default();
        (requests.len() >= PHONES).then_some(requests)
    })
    .await;
    let mut codes = HashMap::new();
    for request in &sent {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let text = body["text"].as_str().unwrap();
        let code: String = text.split_whitespace().next().unwrap().to_owned();
        codes.insert(body["to"].as_str().unwrap().to_owned(), code);
    }
    assert_eq!(codes.len(), PHONES);

    // For each phone, through the two instances that did not register it:
    // two wrong guesses and two right confirms, all at once.
    let password = md5_upper("Kopi-Tubruk-42!");
    let attempts = phones.iter().enumerate().flat_map(|(i, phone)| {
        let code = codes[phone].clone();
        let others = [(i + 1) % 3, (i + 2) % 3];
        let guesses = [
            (others[0], format!("{}000000", &code[..3])),
            (others[1], format!("{}111111", &code[..3])),
            (others[0], code.clone()),
            (others[1], code),
        ];
        guesses.into_iter().map(|(instance, token_value)| {
            let (client, bearer, password) = (&client, &token, &password);
            let url = instances[instance].url("/b2b/customer/register/confirm");
            let phone = phone.clone();
            async move {
                let response = client
                    .post(url)
                    .bearer_auth(bearer)
                    .json(&json!({"username": phone, "password": password, "token": token_value}))
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                let body: Value = response.json().await.unwrap();
                (
                    phone,
                    status,
                    body["code"].as_str().unwrap_or("OK").to_owned(),
                )
            }
        })
    });
    let outcomes = futures::future::join_all(attempts).await;
    let db = reader(&database).await;
    let registrations = entity::registration::Entity::find().all(&db).await.unwrap();
    for phone in &phones {
        let mine: Vec<&(String, reqwest::StatusCode, String)> =
            outcomes.iter().filter(|(p, _, _)| p == phone).collect();
        let confirmed = mine.iter().filter(|(_, s, _)| s.is_success()).count();
        assert_eq!(confirmed, 1, "{phone}: {mine:?}");
        // Every counted guess is in the registration's count, no more.
        let counted = mine.iter().filter(|(_, _, c)| c == "TOKEN_INVALID").count();
        let stored = registrations
            .iter()
            .find(|r| &r.phone == phone)
            .unwrap()
            .failed_attempts;
        assert_eq!(
            usize::try_from(stored).unwrap(),
            counted,
            "{phone}: {mine:?}"
        );
    }
    let customers = entity::customer::Entity::find().all(&db).await.unwrap();
    assert_eq!(customers.len(), PHONES, "one customer per confirmed phone");

    // Exactly one send per message, whichever instance claimed it.
    let requests = gateway.received_requests().await.unwrap();
    let mut ids: Vec<String> = requests
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!(before, ids.len(), "no message sent twice");
    // Every message that was not withdrawn (a newer code replaced it) was sent.
    let messages: Vec<_> = entity::outbox_message::Entity::find()
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.status != entity::states::OutboxStatus::Cancelled)
        .collect();
    assert_eq!(ids.len(), messages.len(), "every queued message sent");

    // A monthly SMS budget set from the CLI holds across the instances:
    // the host queued PHONES SMS this month, so three more may go.
    budget_from_cli(
        dir.path(),
        &database,
        &["--monthly-sms", &(PHONES + 3).to_string()],
    );
    // The instances trust cached tokens (and the host's budget with them)
    // for `auth.token_cache_seconds`, 1 s here.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let capped = (0..6).map(|i| {
        let (client, token) = (&client, &token);
        let url = instances[i % 3].url("/b2b/customer/register");
        let phone = format!("+62812345673{i:02}");
        async move { post(client, url, token, applicant(&phone)).await }
    });
    let answers = futures::future::join_all(capped).await;
    let sent = answers.iter().filter(|(status, _)| *status == 200).count();
    let refused = answers
        .iter()
        .filter(|(status, body)| *status == 429 && body.contains("SEND_QUOTA_EXCEEDED"))
        .count();
    assert_eq!((sent, refused), (3, 3), "{answers:?}");
    budget_from_cli(dir.path(), &database, &["--none"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // One phone registered at the three instances at once, round after
    // round: one registration stands and the others are told to wait out
    // the cooldown, whichever instance's transaction commits first.
    let db = reader(&database).await;
    for round in 0..10 {
        let phone = format!("+62812345674{round:02}");
        let raced = futures::future::join_all((0..3).map(|n| {
            post(
                &client,
                instances[n].url("/b2b/customer/register"),
                &token,
                applicant(&phone),
            )
        }))
        .await;
        assert!(
            raced
                .iter()
                .all(|(status, code)| *status == 200 || code == "REGISTER_TOO_SOON"),
            "round {round}: {raced:?}"
        );
        let stored = entity::registration::Entity::find()
            .all(&db)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.phone == phone)
            .count();
        let granted = raced.iter().filter(|(status, _)| *status == 200).count();
        assert_eq!((granted, stored), (1, 1), "round {round}: {raced:?}");
    }

    let mut instances = instances.into_iter();
    let (first, second, third) = (
        instances.next().unwrap(),
        instances.next().unwrap(),
        instances.next().unwrap(),
    );

    // SIGTERM while requests are in flight: whatever the instance did, the
    // client heard about. A request that got no answer changed nothing.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let in_flight = (0..10).map(|i| {
        let (client, token) = (&fresh, &token);
        let url = first.url("/b2b/customer/register");
        let phone = format!("+62812345671{i:02}");
        async move {
            let answer = client
                .post(url)
                .bearer_auth(token)
                .json(&applicant(&phone))
                .send()
                .await
                .map(|response| response.status());
            (phone, answer)
        }
    });
    let terminate_soon = async {
        tokio::time::sleep(Duration::from_millis(15)).await;
        signal(&first.child, "-TERM");
    };
    let (answers, ()) = tokio::join!(futures::future::join_all(in_flight), terminate_soon);
    let registered: Vec<String> = entity::registration::Entity::find()
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.phone)
        .collect();
    for (phone, answer) in &answers {
        match answer {
            Ok(status) => assert_eq!(*status, reqwest::StatusCode::OK, "{phone}"),
            Err(error) => assert!(
                !registered.contains(phone),
                "{phone} was registered but its client got no answer: {error}"
            ),
        }
    }
    assert_clean_exit(first).await;

    // SIGKILL mid-send: the gateway answers slowly, the killed instance's
    // claims are retried once their lease ends, and nothing is lost. The
    // slow answer takes over at once (a higher priority than the first
    // mock): between a reset and a new mount the gateway would answer 404,
    // a permanent failure, to a send that happened to fall in between.
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "accepted"}))
                .set_delay(Duration::from_millis(300)),
        )
        .with_priority(1)
        .mount(&gateway)
        .await;
    for i in 0..4 {
        let response = client
            .post(second.url("/b2b/customer/register"))
            .bearer_auth(&token)
            .json(&applicant(&format!("+62812345672{i:02}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK);
    }
    signal(&second.child, "-KILL");
    let _ = second.child.wait_with_output().await;
    // Nothing stays queued: every message is sent, or was cancelled because
    // a newer code or registration replaced what it carried. The killed
    // instance's claims wait out their lease (32 s here), and a send that
    // timed out on a loaded machine its backoff: allow for both.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(150);
    loop {
        let unsettled: Vec<_> = entity::outbox_message::Entity::find()
            .all(&db)
            .await
            .unwrap()
            .into_iter()
            .filter(|m| {
                !matches!(
                    m.status,
                    entity::states::OutboxStatus::Sent | entity::states::OutboxStatus::Cancelled
                )
            })
            .collect();
        if unsettled.is_empty() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            let attempts = entity::delivery_attempt::Entity::find()
                .all(&db)
                .await
                .unwrap()
                .into_iter()
                .filter(|a| unsettled.iter().any(|m| m.id == a.message_id))
                .collect::<Vec<_>>();
            panic!(
                "messages still unsettled 150 s after the kill (now {}):\n{unsettled:#?}\ntheir attempts:\n{attempts:#?}\nthe remaining instance's warnings:\n{}",
                chrono::Utc::now(),
                trouble(std::slice::from_ref(&third))
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut sends: HashMap<String, usize> = HashMap::new();
    for request in gateway.received_requests().await.unwrap() {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        *sends
            .entry(body["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert!(
        sends.values().all(|n| *n <= 2),
        "at most one more send, for a claim the killed instance held: {sends:?}"
    );

    signal(&third.child, "-TERM");
    assert_clean_exit(third).await;
}

/// `customer-registration host budget acme ARGS`, as an operator runs it.
fn budget_from_cli(dir: &Path, database: &str, args: &[&str]) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_customer-registration"))
        .args(["host", "budget", "acme"])
        .args(args)
        .env("CR_DATA_DIR", dir.join("cli"))
        .env("DATABASE_URL", url_for_instance(database, 0))
        .env("CR_SECRETS__TOKEN_KEY", "shared-token-key")
        .env("CR_SECRETS__PASSWORD_PEPPER", "shared-pepper")
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "host budget {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn signal(child: &Child, which: &str) {
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args([which, &pid])
            .status()
            .unwrap()
            .success()
    );
}

async fn assert_clean_exit(mut instance: Instance) {
    let status = tokio::time::timeout(Duration::from_secs(25), instance.child.wait())
        .await
        .expect("exits within the grace period")
        .unwrap();
    assert!(status.success(), "{}", instance.log());
}

/// Posts JSON with the bearer token; the status and the error code (`OK`).
async fn post(client: &reqwest::Client, url: String, token: &str, body: Value) -> (u16, String) {
    let response = client
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["code"].as_str().unwrap_or("OK").to_owned())
}

/// The credentials the instance that bootstrapped `acme` wrote, exchanged
/// for a token.
async fn host_token(instances: &[Instance], client: &reqwest::Client) -> String {
    let files: Vec<String> = instances
        .iter()
        .filter_map(|i| std::fs::read_to_string(i.dir.join("host-acme.credentials")).ok())
        .collect();
    assert_eq!(files.len(), 1, "exactly one instance created the host");
    let field = |name: &str| {
        files[0]
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    let token: Value = client
        .post(instances[0].url("/oauth/token"))
        .basic_auth(field("client_id:"), Some(field("client_secret:")))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    token["access_token"].as_str().unwrap().to_owned()
}

/// `GET /b2b/customer/auth/verifyUsername` for `username` at `instance`.
async fn verify_username(
    client: &reqwest::Client,
    instance: &Instance,
    token: &str,
    username: &str,
) -> reqwest::Response {
    client
        .get(instance.url("/b2b/customer/auth/verifyUsername"))
        .query(&[("username", username)])
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn ready(client: &reqwest::Client, instance: &Instance) -> reqwest::StatusCode {
    match client.get(instance.url("/readyz")).send().await {
        Ok(response) => response.status(),
        Err(_) => reqwest::StatusCode::BAD_GATEWAY,
    }
}

/// The code in the latest SMS the gateway got for the phone.
async fn latest_code(gateway: &MockServer, phone: &str, nth: usize) -> String {
    eventually("the SMS at the gateway", || async {
        let texts: Vec<String> = gateway
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
            .filter(|b| b["to"] == phone)
            .map(|b| b["text"].as_str().unwrap().to_owned())
            .collect();
        texts
            .get(nth - 1)
            .map(|t| t.split_whitespace().next().unwrap().to_owned())
    })
    .await
}

/// Each instance on its own node of a Galera cluster: the races the rules
/// guard against are run across nodes, then a node is stopped and started.
/// `.ci/run` sets it up: `GALERA_DIR` (for stopping a node),
/// `TEST_DATABASE_URL` (node 1) and `TEST_DATABASE_NODES` (all three).
#[tokio::test]
#[ignore = "needs a 3-node Galera cluster: eval \"$(.ci/galera start)\" and set TEST_DATABASE_URL and TEST_DATABASE_NODES as .ci/run does"]
async fn across_galera_nodes_races_stay_exact_and_a_lost_node_fails_cleanly() {
    let galera = std::env::var("GALERA_DIR").expect("GALERA_DIR names the cluster");
    assert!(
        std::env::var("TEST_DATABASE_NODES").is_ok(),
        "TEST_DATABASE_NODES"
    );
    let dir = tempfile::tempdir().unwrap();
    let database = database_url(dir.path()).await;
    let (gateway, gateway_url) = accepting_gateway().await;
    const SMS_LIMIT: usize = 30;
    let limit = SMS_LIMIT.to_string();
    let settings = [
        ("CR_REGISTRATION__RESEND_COOLDOWN_SECONDS", "1"),
        ("CR_QUOTAS__SMS_GLOBAL__LIMIT", limit.as_str()),
        ("CR_QUOTAS__SMS_GLOBAL__WINDOW_MINUTES", "1440"),
    ];
    let client = reqwest::Client::new();
    let instances = start_three(dir.path(), &database, &gateway_url, &settings, &client).await;
    let token = host_token(&instances, &client).await;
    let register = |n: usize, phone: String| {
        post(
            &client,
            instances[n % 3].url("/b2b/customer/register"),
            &token,
            applicant(&phone),
        )
    };
    let db = reader(&database).await;
    let registration = |phone: &'static str| {
        let db = &db;
        async move {
            entity::registration::Entity::find()
                .all(db)
                .await
                .unwrap()
                .into_iter()
                .filter(|r| {
                    r.phone == phone && r.status != entity::states::RegistrationStatus::Superseded
                })
                .collect::<Vec<_>>()
        }
    };

    // 40 wrong guesses at once, spread over the three nodes: exactly 5 count.
    const GUESSED: &str = "+6281234560001";
    assert_eq!(register(0, GUESSED.into()).await.0, 200);
    let code = latest_code(&gateway, GUESSED, 1).await;
    let guesses = (0..40).map(|i| {
        let wrong = format!("{}{:06}", &code[..3], (i * 7919) % 1_000_000);
        let wrong = if wrong == code {
            format!("{}999999", &code[..3])
        } else {
            wrong
        };
        post(
            &client,
            instances[i % 3].url("/b2b/customer/register/confirm"),
            &token,
            json!({"username": GUESSED, "password": md5_upper("pw"), "token": wrong}),
        )
    });
    let outcomes = futures::future::join_all(guesses).await;
    let counted = outcomes.iter().filter(|(s, _)| *s == 422).count();
    assert_eq!(counted, 5, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|(s, c)| *s == 422 || c == "REGISTRATION_LOCKED"),
        "{outcomes:?}"
    );
    assert_eq!(registration(GUESSED).await[0].failed_attempts, 5);

    // One phone registered at the three nodes at once: one pending registration.
    const RACED: &str = "+6281234560002";
    let raced = futures::future::join_all((0..3).map(|n| register(n, RACED.into()))).await;
    assert!(
        raced.iter().any(|(s, _)| *s == 200),
        "{raced:?}\n{}",
        trouble(&instances)
    );
    assert!(
        raced
            .iter()
            .all(|(s, c)| *s == 200 || c == "REGISTER_TOO_SOON"),
        "{raced:?}\n{}",
        trouble(&instances)
    );
    let pending = registration(RACED).await;
    assert_eq!(pending.len(), 1, "one registration stands: {pending:?}");

    // Resends racing the cooldown on three nodes: exactly one goes through.
    const RESENT: &str = "+6281234560003";
    assert_eq!(register(1, RESENT.into()).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let resends = (0..6).map(|i| {
        post(
            &client,
            instances[i % 3].url("/b2b/customer/resend/registration/sms"),
            &token,
            json!({"username": RESENT, "phone": RESENT}),
        )
    });
    let resends = futures::future::join_all(resends).await;
    assert_eq!(
        resends.iter().filter(|(s, _)| *s == 200).count(),
        1,
        "{resends:?}"
    );
    assert!(
        resends
            .iter()
            .all(|(s, c)| *s == 200 || c == "RESEND_TOO_SOON"),
        "{resends:?}"
    );
    assert_eq!(registration(RESENT).await[0].sms_sends, 2);

    // The global SMS quota near its limit: exactly what is left is granted.
    let used: usize = entity::send_quota::Entity::find()
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .filter(|q| counts_global_sms(&q.scope))
        .map(|q| usize::try_from(q.used).unwrap())
        .sum();
    let left = SMS_LIMIT - used;
    let registers = (0..left + 4).map(|i| register(i, format!("+62812345611{i:02}")));
    let granted = futures::future::join_all(registers).await;
    // Every SMS queued was counted once, and the counter stopped at the
    // limit: a lost update on the hot row would show here first.
    let counted: i32 = entity::send_quota::Entity::find()
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .filter(|q| counts_global_sms(&q.scope))
        .map(|q| q.used)
        .sum();
    let queued = entity::outbox_message::Entity::find()
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.channel == entity::states::Channel::Sms)
        .count();
    assert_eq!(
        (usize::try_from(counted).unwrap(), queued),
        (SMS_LIMIT, SMS_LIMIT),
        "the global SMS counter against the SMS queued: {granted:?}\n{}",
        trouble(&instances)
    );
    assert_eq!(
        granted.iter().filter(|(s, _)| *s == 200).count(),
        left,
        "{granted:?}\n{}",
        trouble(&instances)
    );
    assert!(
        granted
            .iter()
            .all(|(s, c)| *s == 200 || c == "SEND_QUOTA_EXCEEDED"),
        "{granted:?}\n{}",
        trouble(&instances)
    );

    // What the races queued is sent first: a node stopped under a send in
    // flight leaves that send unrecorded, and it goes out again once its
    // lease ends (delivery is at least once; docs/CLUSTERS.md). The check
    // below that nothing went out twice is about the races.
    all_settled(&db, "every message of the races settled").await;

    // Node 3 is cut off from the other two (as by a network partition): it
    // still answers pings and refuses every statement. Its instance is not
    // ready, and refuses with 503, not 500; the others go on.
    let nodes = std::env::var("TEST_DATABASE_NODES").unwrap();
    let node3 = nodes.split(',').nth(2).unwrap().trim().to_owned();
    let isolated = Database::connect(&node3).await.unwrap();
    let isolate = |on: bool| {
        let isolated = &isolated;
        async move {
            isolated
                .execute_unprepared(&format!(
                    "SET GLOBAL wsrep_provider_options = 'gmcast.isolate={}'",
                    u8::from(on)
                ))
                .await
                .unwrap();
        }
    };
    isolate(true).await;
    // Observed first, asserted after the node is reconnected: a failed
    // assertion must not leave the cluster split for the next test. The
    // node notices it is alone after its suspect timeout (about 10 s); until
    // then it may refuse statements while still reporting itself ready.
    let mut readiness = Value::Null;
    for _ in 0..60 * 20 {
        if let Ok(response) = client.get(instances[2].url("/readyz")).send().await {
            readiness = response.json::<Value>().await.unwrap_or_default();
            if readiness["cluster"] == json!(false) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = verify_username(&client, &instances[2], &token, GUESSED).await;
    let others = [
        ready(&client, &instances[0]).await,
        ready(&client, &instances[1]).await,
    ];
    // Reconnected, the node rejoins, and its instance is ready again.
    isolate(false).await;
    isolated.close().await.ok();
    assert_eq!(
        (
            &readiness["ready"],
            &readiness["database"],
            &readiness["cluster"]
        ),
        (&json!(false), &json!(true), &json!(false)),
        "the cut-off node's instance: {readiness}"
    );
    assert_eq!(
        refused.status(),
        reqwest::StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        trouble(&instances)
    );
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(others, [reqwest::StatusCode::OK; 2]);
    eventually("the instance on the reconnected node ready", || async {
        (ready(&client, &instances[2]).await == reqwest::StatusCode::OK).then_some(())
    })
    .await;

    // Node 3 goes away: its instance says so and refuses cleanly; the
    // others go on. (The quota is used up: these registers carry no SMS
    // quota left, so they are judged by the answer alone.)
    let stopped = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/galera"))
        .args(["stop-node", &galera, "3"])
        .status()
        .unwrap();
    assert!(stopped.success());
    eventually("the instance on the stopped node not ready", || async {
        (ready(&client, &instances[2]).await == reqwest::StatusCode::SERVICE_UNAVAILABLE)
            .then_some(())
    })
    .await;
    let (status, code) = post(
        &client,
        instances[2].url("/b2b/customer/auth/verifyUsername"),
        &token,
        Value::Null,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (405, "METHOD_NOT_ALLOWED"),
        "routing still answers"
    );
    let refused = verify_username(&client, &instances[2], &token, GUESSED).await;
    assert_eq!(refused.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    for instance in &instances[..2] {
        assert_eq!(ready(&client, instance).await, reqwest::StatusCode::OK);
        let answered = verify_username(&client, instance, &token, GUESSED).await;
        assert_eq!(answered.status(), reqwest::StatusCode::OK);
    }

    // Back: the node rejoins and its instance serves again.
    let started = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/galera"))
        .args(["start-node", &galera, "3"])
        .status()
        .unwrap();
    assert!(
        started.success(),
        "node 3 did not rejoin (the galera script says why above)"
    );
    eventually("the instance on the rejoined node ready", || async {
        (ready(&client, &instances[2]).await == reqwest::StatusCode::OK).then_some(())
    })
    .await;

    // Every message settles, none went out twice, every acknowledged
    // registration is there.
    all_settled(&db, "every message settled").await;
    let mut ids: Vec<String> = gateway
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let sent = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), sent, "no message sent twice");
    let stored = entity::registration::Entity::find().all(&db).await.unwrap();
    for (i, (status, _)) in granted.iter().enumerate() {
        if *status == 200 {
            let phone = format!("+62812345611{i:02}");
            assert!(
                stored.iter().any(|r| r.phone == phone),
                "{phone} acknowledged and kept"
            );
        }
    }
}

/// The rows the global SMS quota counts in: its own (sends counted before
/// allowances) and those it granted allowances to (`scope#N@limit`).
fn counts_global_sms(scope: &str) -> bool {
    scope == "sms:global" || scope.starts_with("sms:global#")
}

/// Every register answered 200 is stored, and every one refused is not,
/// when rounds of racing registers hit the global SMS quota across the
/// three nodes of a Galera cluster. A node that rolls back a local
/// transaction for another node's write set does not always tell the next
/// statement; a `COMMIT` after that answers OK with nothing stored
/// (`db::commit` checks first). Without that check this test failed
/// about one run in ten (a 500, or a 200 with nothing stored). Without the
/// guard `db::begin` opens, the statements after such a rollback committed
/// one by one, and the rerun was refused with its register stored.
/// `GALERA_ROUNDS` runs more rounds than the 8 CI runs, to measure.
#[tokio::test]
#[ignore = "needs a 3-node Galera cluster: eval \"$(.ci/galera start)\" and set TEST_DATABASE_URL and TEST_DATABASE_NODES as .ci/run does"]
async fn across_galera_nodes_every_answered_register_is_stored() {
    assert!(
        std::env::var("TEST_DATABASE_NODES").is_ok(),
        "TEST_DATABASE_NODES"
    );
    const LIMIT: i32 = 1_000;
    const RACING: usize = 40;
    const LEFT: usize = 26;
    let dir = tempfile::tempdir().unwrap();
    let database = database_url(dir.path()).await;
    let (_gateway, gateway_url) = accepting_gateway().await;
    let limit = LIMIT.to_string();
    let settings = [
        ("CR_QUOTAS__SMS_GLOBAL__LIMIT", limit.as_str()),
        ("CR_QUOTAS__SMS_GLOBAL__WINDOW_MINUTES", "1440"),
        ("CR_QUOTAS__REGISTER_PER_HOST__LIMIT", "100000"),
        ("CR_QUOTAS__SMS_PER_HOST__LIMIT", "100000"),
    ];
    let client = reqwest::Client::new();
    let instances = start_three(dir.path(), &database, &gateway_url, &settings, &client).await;
    let token = host_token(&instances, &client).await;
    let db = reader(&database).await;
    let rounds: usize = std::env::var("GALERA_ROUNDS").map_or(8, |n| n.parse().unwrap());
    let mut registered = 0;
    for round in 0..rounds {
        // From the second round on, LEFT SMS are left under the limit.
        if round > 0 {
            // As if sent before allowances: the global row's own count.
            db.execute_unprepared("DELETE FROM send_quota WHERE scope LIKE 'sms:global#%'")
                .await
                .unwrap();
            db.execute_unprepared(&format!(
                "UPDATE send_quota SET used = {}, granted = 0 WHERE scope = 'sms:global'",
                LIMIT - i32::try_from(LEFT).unwrap()
            ))
            .await
            .unwrap();
        }
        let phones: Vec<String> = (0..RACING)
            .map(|i| format!("+6281234{:06}", registered + i))
            .collect();
        registered += RACING;
        let answers = futures::future::join_all(phones.iter().enumerate().map(|(i, phone)| {
            post(
                &client,
                instances[i % 3].url("/b2b/customer/register"),
                &token,
                applicant(phone),
            )
        }))
        .await;
        let stored = entity::registration::Entity::find().all(&db).await.unwrap();
        let queued = entity::outbox_message::Entity::find()
            .all(&db)
            .await
            .unwrap();
        for (phone, (status, code)) in phones.iter().zip(&answers) {
            let mine: Vec<_> = stored.iter().filter(|r| &r.phone == phone).collect();
            let sms = queued
                .iter()
                .filter(|m| mine.iter().any(|r| r.id == m.registration_id))
                .count();
            let expected = usize::from(*status == 200);
            assert_eq!(
                (mine.len(), sms),
                (expected, expected),
                "round {round}, {phone} answered {status} {code}\n{}",
                trouble(&instances)
            );
            assert!(
                *status == 200 || code == "SEND_QUOTA_EXCEEDED",
                "round {round}, {phone} answered {status} {code}\n{}",
                trouble(&instances)
            );
        }
        let granted = answers.iter().filter(|(s, _)| *s == 200).count();
        let counted: Vec<(String, i32)> = entity::send_quota::Entity::find()
            .all(&db)
            .await
            .unwrap()
            .into_iter()
            .filter(|q| counts_global_sms(&q.scope))
            .map(|q| (q.scope, q.used))
            .collect();
        assert_eq!(
            granted,
            if round == 0 { RACING } else { LEFT },
            "round {round}: {answers:?}\nthe global SMS counter: {counted:?}\n{}",
            trouble(&instances)
        );
    }
}
