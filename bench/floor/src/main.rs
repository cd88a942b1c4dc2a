//! The floor for bench/run (issue 12): what the machine, not the service's
//! code, allows.
//!
//! `floor serve --database-url URL [--listen ADDR]` serves
//! - `POST /register`: the same kind of writes as one registration, in ONE
//!   transaction: a registration row and its outbox rows (an SMS, plus an
//!   email when the body has one);
//! - `POST /register-rows`: every row a register with email writes and
//!   updates in the service, its delivery's included: the registration,
//!   its SMS code and completion link, its two outbox messages and its four
//!   recipient quota counters (upserted), then both messages claimed, their
//!   results recorded (the bodies cleared; since session 48 the service
//!   writes no timeline row for a send that went through). Written
//!   as the service writes registers, in batches: each request leaves its
//!   register to writer tasks (`--rows-writers`, 1 on SQLite and 8 on
//!   PostgreSQL as the service's; `--rows-most`, 32 a batch), each of which
//!   takes the registers waiting and writes them in one transaction, one
//!   multi-row statement per table and step. Left out: the service's checks
//!   (one read a batch), its shared quota counters (host and global), its
//!   token lookup and the making and sending of its messages. Not the
//!   service's contract but a reading of what its rows alone allow
//!   (docs/PERFORMANCE.md, session 36). The tables carry the service's
//!   indexes and foreign keys. `FLOOR_ROWS_WITHOUT` leaves steps out, to
//!   read what each costs (session 42);
//! - `GET /verify?username=`: one indexed lookup.
//!
//! on SQLite (WAL, a pool of 16 as the service has) or PostgreSQL. It prints
//! `listening on ADDR` once it accepts connections.
//!
//! `floor argon2 [--seconds S] [--threads N]` hashes with Argon2id at the
//! service's parameters (19 MiB, t=2, p=1; src/crypto/password.rs) on N
//! threads, each reusing one memory area as the service does, and prints one
//! JSON line with the hashes per second.
use std::{
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::StatusCode,
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::{
    PgPool, QueryBuilder, SqlitePool,
    postgres::PgPoolOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions},
};
use tokio::sync::{Mutex, mpsc, oneshot};

const USAGE: &str = "usage: floor serve --database-url URL [--listen ADDR] [--rows-writers N] [--rows-most N]\n       floor argon2 [--seconds S] [--threads N]";

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS floor_registration (id TEXT PRIMARY KEY, phone TEXT NOT NULL, \
     email TEXT, name TEXT NOT NULL, birth_date TEXT NOT NULL, birth_place TEXT NOT NULL, \
     gender BOOLEAN NOT NULL, country TEXT NOT NULL, source_id TEXT, \
     account_group_id TEXT NOT NULL, token_hash TEXT NOT NULL, status TEXT NOT NULL, \
     created_at BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS floor_registration_phone ON floor_registration (phone)",
    "CREATE TABLE IF NOT EXISTS floor_outbox (id TEXT PRIMARY KEY, registration_id TEXT NOT NULL, \
     channel TEXT NOT NULL, recipient TEXT NOT NULL, body TEXT NOT NULL, status TEXT NOT NULL, \
     due_at BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS floor_outbox_due ON floor_outbox (status, due_at)",
    "CREATE TABLE IF NOT EXISTS floor_customer (id TEXT PRIMARY KEY, \
     username TEXT NOT NULL UNIQUE, email TEXT)",
    // The service's rows for `/register-rows`, with its indexes.
    "CREATE TABLE IF NOT EXISTS rows_registration (id TEXT PRIMARY KEY, host_id TEXT NOT NULL, \
     phone TEXT NOT NULL, email TEXT, name TEXT NOT NULL, birth_date TEXT NOT NULL, \
     birth_place TEXT NOT NULL, gender BOOLEAN NOT NULL, country_id TEXT NOT NULL, \
     source_id TEXT, account_group_id TEXT NOT NULL, status TEXT NOT NULL, \
     failed_attempts INTEGER NOT NULL DEFAULT 0, sms_sends INTEGER NOT NULL DEFAULT 0, \
     email_sends INTEGER NOT NULL DEFAULT 0, last_sms_at BIGINT, last_email_at BIGINT, \
     created_at BIGINT NOT NULL, completed_at BIGINT, language TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS rows_registration_host_phone_created \
     ON rows_registration (host_id, phone, created_at)",
    "CREATE UNIQUE INDEX IF NOT EXISTS rows_registration_one_pending \
     ON rows_registration (host_id, phone) WHERE status = 'pending'",
    "CREATE TABLE IF NOT EXISTS rows_sms_token (id TEXT PRIMARY KEY, \
     registration_id TEXT NOT NULL REFERENCES rows_registration (id), attempt INTEGER NOT NULL, \
     prefix TEXT NOT NULL, code_hash TEXT NOT NULL, created_at BIGINT NOT NULL, \
     expires_at BIGINT NOT NULL, superseded_at BIGINT)",
    "CREATE INDEX IF NOT EXISTS rows_sms_token_registration ON rows_sms_token (registration_id)",
    "CREATE TABLE IF NOT EXISTS rows_completion_link (id TEXT PRIMARY KEY, \
     registration_id TEXT NOT NULL REFERENCES rows_registration (id), \
     token_hash TEXT NOT NULL UNIQUE, created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, \
     used_at BIGINT, superseded_at BIGINT)",
    "CREATE TABLE IF NOT EXISTS rows_outbox (id TEXT PRIMARY KEY, \
     registration_id TEXT NOT NULL REFERENCES rows_registration (id), channel TEXT NOT NULL, \
     recipient TEXT NOT NULL, subject TEXT, body TEXT, html_body TEXT, status TEXT NOT NULL, \
     attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at BIGINT, lease_until BIGINT, \
     lease_token TEXT, provider TEXT, provider_message_id TEXT, country TEXT, \
     created_at BIGINT NOT NULL, sent_at BIGINT)",
    "CREATE INDEX IF NOT EXISTS rows_outbox_created ON rows_outbox (created_at)",
    "CREATE INDEX IF NOT EXISTS rows_outbox_due_pending ON rows_outbox (next_attempt_at) \
     WHERE status = 'pending' AND next_attempt_at IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS rows_outbox_registration ON rows_outbox (registration_id)",
    "CREATE TABLE IF NOT EXISTS rows_send_quota (scope TEXT NOT NULL, window_start BIGINT NOT NULL, \
     used INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (scope, window_start))",
    "CREATE INDEX IF NOT EXISTS rows_outbox_provider_message ON rows_outbox \
     (provider_message_id) WHERE provider_message_id IS NOT NULL",
];

const INSERT_REGISTRATION: &str = "INSERT INTO floor_registration (id, phone, email, name, \
     birth_date, birth_place, gender, country, source_id, account_group_id, token_hash, status, \
     created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', $12)";
const INSERT_OUTBOX: &str = "INSERT INTO floor_outbox (id, registration_id, channel, recipient, \
     body, status, due_at) VALUES ($1, $2, $3, $4, $5, 'pending', $6)";
const INSERT_CUSTOMER: &str =
    "INSERT INTO floor_customer (id, username, email) VALUES ($1, $2, $3)";
const VERIFY: &str = "SELECT COUNT(*) FROM floor_customer WHERE username = $1";

/// Customers put in the table at start, so the lookup searches an index
/// that holds something.
const SEEDED_CUSTOMERS: u64 = 10_000;

enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same code on whichever pool is configured.
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            Db::Sqlite($pool) => $body,
            Db::Postgres($pool) => $body,
        }
    };
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegisterBody {
    phone: String,
    name: String,
    birth_date: String,
    birth_place: String,
    email: Option<String>,
    gender: bool,
    country_id: String,
    source_id: Option<String>,
    account_group_id: String,
}

#[derive(Deserialize)]
struct VerifyQuery {
    username: String,
}

type Failure = (StatusCode, String);

fn failed(e: impl std::fmt::Display) -> Failure {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

fn random_hex() -> String {
    rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn register(
    State(AppState { db, .. }): State<AppState>,
    Json(body): Json<RegisterBody>,
) -> Result<Json<Value>, Failure> {
    let id = uuid::Uuid::now_v7().to_string();
    let now = now_micros();
    let code = random_hex();
    let sms = format!("{} adalah kode registrasi Anda.", &code[..9]);
    on_db!(&*db, pool => {
        let mut tx = pool.begin().await.map_err(failed)?;
        sqlx::query(INSERT_REGISTRATION)
            .bind(&id)
            .bind(&body.phone)
            .bind(&body.email)
            .bind(&body.name)
            .bind(&body.birth_date)
            .bind(&body.birth_place)
            .bind(body.gender)
            .bind(&body.country_id)
            .bind(&body.source_id)
            .bind(&body.account_group_id)
            .bind(&code)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        sqlx::query(INSERT_OUTBOX)
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(&id)
            .bind("sms")
            .bind(&body.phone)
            .bind(&sms)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        if let Some(email) = &body.email {
            sqlx::query(INSERT_OUTBOX)
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(&id)
                .bind("email")
                .bind(email)
                .bind(format!("https://registration.local/complete/{}", random_hex()))
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
        }
        tx.commit().await.map_err(failed)?;
    });
    Ok(Json(json!({"id": id, "username": body.phone})))
}

/// Base64 text of about the length of a sealed body of `plain` bytes.
fn sealed(plain: usize) -> String {
    random_hex().repeat(plain / 32 + 2)[..plain * 4 / 3 + 40].to_owned()
}

/// A register waiting for a rows writer (`POST /register-rows`).
struct RowsItem {
    body: RegisterBody,
    answer: oneshot::Sender<Result<String, String>>,
}

/// Where `/register-rows` leaves its registers for the writers.
#[derive(Clone)]
struct RowsQueue(mpsc::UnboundedSender<RowsItem>);

/// `POST /register-rows`: the service's rows of a register with email and
/// of its delivery, written by a rows writer with the others waiting (see
/// the module's comment).
async fn register_rows(
    State(state): State<AppState>,
    Json(body): Json<RegisterBody>,
) -> Result<Json<Value>, Failure> {
    let (answer, answered) = oneshot::channel();
    let username = body.phone.clone();
    state
        .rows
        .0
        .send(RowsItem { body, answer })
        .map_err(|_| failed("the rows writers stopped"))?;
    let id = answered
        .await
        .map_err(|_| failed("a rows writer went away"))?
        .map_err(failed)?;
    Ok(Json(json!({"id": id, "username": username})))
}

/// One of `writers` tasks that take up to `most` waiting registers at a
/// time and write their rows together, one multi-row statement per table
/// and step, in one transaction, as the service's batches do.
async fn rows_writer(
    db: Arc<Db>,
    waiting: Arc<Mutex<mpsc::UnboundedReceiver<RowsItem>>>,
    most: usize,
) {
    let mut batch = Vec::with_capacity(most);
    loop {
        if waiting.lock().await.recv_many(&mut batch, most).await == 0 {
            return;
        }
        let rows: Vec<RegisterRows> = batch
            .iter()
            .map(|item| RegisterRows::new(&item.body))
            .collect();
        let written = write_rows(&db, &batch, &rows).await;
        for (item, rows) in batch.drain(..).zip(rows) {
            let _ = item.answer.send(written.clone().map(|()| rows.id));
        }
    }
}

/// What one register writes besides its request's fields.
struct RegisterRows {
    id: String,
    sms_id: String,
    email_id: String,
    email: String,
    scopes: [String; 4],
}

impl RegisterRows {
    fn new(body: &RegisterBody) -> Self {
        let (phone_key, email_key) = (&random_hex()[..32], &random_hex()[..32]);
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            sms_id: uuid::Uuid::now_v7().to_string(),
            email_id: uuid::Uuid::now_v7().to_string(),
            email: body
                .email
                .clone()
                .unwrap_or_else(|| format!("{}@example.com", body.phone)),
            scopes: [
                format!("sms:recipient:{phone_key}"),
                format!("sms:recipient:{phone_key}:host:{ROWS_HOST}"),
                format!("email:recipient:{email_key}"),
                format!("email:recipient:{email_key}:host:{ROWS_HOST}"),
            ],
        }
    }
}

/// Whether `FLOOR_ROWS_WITHOUT` (a comma-separated list of `token`, `link`,
/// `quota`, `claim`, `record`) leaves that step of
/// `/register-rows` out: a reading of what each part of a register's rows
/// costs (docs/PERFORMANCE.md, session 42). Unset in bench/run's readings.
fn without(step: &str) -> bool {
    static WITHOUT: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    WITHOUT
        .get_or_init(|| {
            std::env::var("FLOOR_ROWS_WITHOUT")
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .iter()
        .any(|s| s == step)
}

const ROWS_HOST: &str = "01a247ff358b7605ac95ea1649b51f61";

async fn write_rows(db: &Db, items: &[RowsItem], rows: &[RegisterRows]) -> Result<(), String> {
    const HOUR_MICROS: i64 = 3_600_000_000;
    let now = now_micros();
    let window = now - now % HOUR_MICROS;
    let lease = uuid::Uuid::new_v4().to_string();
    let both = || rows.iter().flat_map(|r| [&r.sms_id, &r.email_id]);
    let message = |e: sqlx::Error| e.to_string();
    on_db!(db, pool => {
        let mut tx = pool.begin().await.map_err(message)?;
        QueryBuilder::new(
            "INSERT INTO rows_registration (id, host_id, phone, email, name, birth_date, \
             birth_place, gender, country_id, source_id, account_group_id, status, sms_sends, \
             email_sends, last_sms_at, last_email_at, created_at, language) ",
        )
        .push_values(items.iter().zip(rows), |mut row, (item, r)| {
            let b = &item.body;
            row.push_bind(&r.id).push_bind(ROWS_HOST).push_bind(&b.phone).push_bind(&r.email)
                .push_bind(&b.name).push_bind(&b.birth_date).push_bind(&b.birth_place)
                .push_bind(b.gender).push_bind(&b.country_id).push_bind(&b.source_id)
                .push_bind(&b.account_group_id).push("'pending', 1, 1").push_bind(now)
                .push_bind(now).push_bind(now).push("'id'");
        })
        .build()
        .execute(&mut *tx)
        .await
        .map_err(message)?;
        if !without("token") {
            QueryBuilder::new(
                "INSERT INTO rows_sms_token (id, registration_id, attempt, prefix, code_hash, \
                 created_at, expires_at) ",
            )
            .push_values(rows, |mut row, r| {
                row.push_bind(uuid::Uuid::now_v7().to_string()).push_bind(&r.id).push("1")
                    .push_bind("ABC").push_bind(random_hex()).push_bind(now)
                    .push_bind(now + 5 * 60_000_000);
            })
            .build()
            .execute(&mut *tx)
            .await
            .map_err(message)?;
        }
        if !without("link") {
            QueryBuilder::new(
                "INSERT INTO rows_completion_link (id, registration_id, token_hash, created_at, \
                 expires_at) ",
            )
            .push_values(rows, |mut row, r| {
                row.push_bind(uuid::Uuid::now_v7().to_string()).push_bind(&r.id)
                    .push_bind(random_hex()).push_bind(now).push_bind(now + 24 * HOUR_MICROS);
            })
            .build()
            .execute(&mut *tx)
            .await
            .map_err(message)?;
        }
        // The SMS, then the email, of each register.
        let messages = items.iter().zip(rows).flat_map(|(item, r)| {
            [
                (&r.sms_id, &r.id, "sms", &item.body.phone, None, sealed(109), None, Some("ID")),
                (&r.email_id, &r.id, "email", &r.email, Some("Complete your registration"),
                 sealed(241), Some(sealed(808)), None),
            ]
        });
        QueryBuilder::new(
            "INSERT INTO rows_outbox (id, registration_id, channel, recipient, subject, body, \
             html_body, status, next_attempt_at, country, created_at) ",
        )
        .push_values(messages, |mut row, (id, registration, channel, to, subject, body, html, country)| {
            row.push_bind(id).push_bind(registration).push_bind(channel).push_bind(to)
                .push_bind(subject).push_bind(body).push_bind(html).push("'pending'")
                .push_bind(now).push_bind(country).push_bind(now);
        })
        .build()
        .execute(&mut *tx)
        .await
        .map_err(message)?;
        if !without("quota") {
            QueryBuilder::new("INSERT INTO rows_send_quota (scope, window_start, used) ")
                .push_values(rows.iter().flat_map(|r| &r.scopes), |mut row, scope| {
                    row.push_bind(scope).push_bind(window).push("1");
                })
                .push(" ON CONFLICT (scope, window_start) DO UPDATE SET used = rows_send_quota.used + 1")
                .build()
                .execute(&mut *tx)
                .await
                .map_err(message)?;
        }
        if !without("claim") {
            let mut claim = QueryBuilder::new(
                "UPDATE rows_outbox SET status = 'sending', attempts = attempts + 1, provider = 'file', lease_until = ",
            );
            claim.push_bind(now + 60_000_000).push(", lease_token = ").push_bind(&lease)
                .push(" WHERE status = 'pending' AND id IN (");
            let mut ids = claim.separated(", ");
            for id in both() {
                ids.push_bind(id);
            }
            claim.push(")").build().execute(&mut *tx).await.map_err(message)?;
        }
        if !without("record") {
            let mut result = QueryBuilder::new(
                "UPDATE rows_outbox SET status = 'sent', provider_message_id = id, body = NULL, \
                 html_body = NULL, lease_until = NULL, lease_token = NULL, next_attempt_at = NULL, \
                 sent_at = ",
            );
            result.push_bind(now).push(" WHERE lease_token = ").push_bind(&lease).push(" AND id IN (");
            let mut ids = result.separated(", ");
            for id in both() {
                ids.push_bind(id);
            }
            result.push(")").build().execute(&mut *tx).await.map_err(message)?;
        }
        tx.commit().await.map_err(message)?;
    });
    Ok(())
}

async fn verify(
    State(AppState { db, .. }): State<AppState>,
    Query(query): Query<VerifyQuery>,
) -> Result<Json<Value>, Failure> {
    let count: i64 = on_db!(&*db, pool => {
        sqlx::query_scalar(VERIFY)
            .bind(&query.username)
            .fetch_one(pool)
            .await
            .map_err(failed)?
    });
    Ok(Json(
        json!({"username": query.username, "exists": count > 0}),
    ))
}

async fn connect(url: &str) -> Result<Db, String> {
    let db = if url.starts_with("sqlite:") {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| format!("bad SQLite URL {url}: {e}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // As the service: a multi-row statement's journal in memory.
            .pragma("temp_store", "memory");
        Db::Sqlite(
            SqlitePoolOptions::new()
                .max_connections(16)
                .connect_with(options)
                .await
                .map_err(|e| format!("cannot open {url}: {e}"))?,
        )
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Db::Postgres(
            PgPoolOptions::new()
                .max_connections(16)
                .connect(url)
                .await
                .map_err(|e| format!("cannot connect to {url}: {e}"))?,
        )
    } else {
        return Err(format!("unsupported database URL {url}"));
    };
    on_db!(&db, pool => {
        for statement in SCHEMA {
            sqlx::query(*statement)
                .execute(pool)
                .await
                .map_err(|e| format!("cannot create the tables: {e}"))?;
        }
        let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
        for n in 0..SEEDED_CUSTOMERS {
            sqlx::query(INSERT_CUSTOMER)
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(format!("+62899{n:08}"))
                .bind(format!("seed{n}@example.com"))
                .execute(&mut *tx)
                .await
                .map_err(|e| format!("cannot seed customers: {e}"))?;
        }
        tx.commit().await.map_err(|e| e.to_string())?;
    });
    Ok(db)
}

#[derive(Clone)]
struct AppState {
    db: Arc<Db>,
    rows: RowsQueue,
}

async fn serve(
    url: &str,
    listen: &str,
    rows_writers: usize,
    rows_most: usize,
) -> Result<(), String> {
    let db = Arc::new(connect(url).await?);
    let (rows, waiting) = mpsc::unbounded_channel();
    let waiting = Arc::new(Mutex::new(waiting));
    for _ in 0..rows_writers {
        tokio::spawn(rows_writer(db.clone(), waiting.clone(), rows_most));
    }
    let state = AppState {
        db,
        rows: RowsQueue(rows),
    };
    let app = Router::new()
        .route("/register", post(register))
        .route("/register-rows", post(register_rows))
        .route("/verify", get(verify))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on {addr}");
    axum::serve(listener, app).await.map_err(|e| e.to_string())
}

/// Hashes per second at the service's parameters, on `threads` threads.
fn argon2_rate(seconds: f64, threads: usize) -> Result<Value, String> {
    use argon2::{Algorithm, Argon2, Block, Params, ParamsBuilder, Version};
    let params: Params = ParamsBuilder::new()
        .m_cost(19 * 1024)
        .t_cost(2)
        .p_cost(1)
        .build()
        .map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let hashes = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (stop, hashes, params) = (Arc::clone(&stop), Arc::clone(&hashes), params.clone());
            std::thread::spawn(move || -> Result<(), String> {
                let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
                let mut memory = vec![Block::default(); argon2.params().block_count()];
                let mut output = [0u8; 32];
                let password = random_hex();
                while !stop.load(Ordering::Relaxed) {
                    let salt: [u8; 16] = rand::random();
                    argon2
                        .hash_password_into_with_memory(
                            password.as_bytes(),
                            &salt,
                            &mut output,
                            &mut memory[..],
                        )
                        .map_err(|e| e.to_string())?;
                    hashes.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker
            .join()
            .map_err(|_| "a hashing thread panicked".to_owned())??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let count = hashes.load(Ordering::Relaxed);
    Ok(json!({
        "hashes": count,
        "seconds": elapsed,
        "threads": threads,
        "hashes_per_second": count as f64 / elapsed,
        "params": {"m_cost_kib": 19 * 1024, "t_cost": 2, "p_cost": 1},
    }))
}

fn option(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn number_option(args: &[String], name: &str) -> Result<Option<usize>, String> {
    option(args, name)
        .map(|s| s.parse::<usize>())
        .transpose()
        .map_err(|e| format!("{name}: {e}"))
}

fn run(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("serve") => {
            let url = option(args, "--database-url").ok_or(USAGE)?;
            let listen = option(args, "--listen").unwrap_or_else(|| "127.0.0.1:0".to_owned());
            // As the service: SQLite has one writer, PostgreSQL eight
            // batches side by side; batches of at most 32.
            let writers = if url.starts_with("sqlite:") { 1 } else { 8 };
            let writers = number_option(args, "--rows-writers")?.unwrap_or(writers);
            let most = number_option(args, "--rows-most")?.unwrap_or(32);
            tokio::runtime::Runtime::new()
                .map_err(|e| e.to_string())?
                .block_on(serve(&url, &listen, writers.max(1), most.max(1)))
        }
        Some("argon2") => {
            let seconds = option(args, "--seconds")
                .map(|s| s.parse::<f64>())
                .transpose()
                .map_err(|e| format!("--seconds: {e}"))?
                .unwrap_or(5.0);
            let threads = number_option(args, "--threads")?.unwrap_or(2);
            println!("{}", argon2_rate(seconds, threads.max(1))?);
            Ok(())
        }
        _ => Err(USAGE.to_owned()),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("floor: {e}");
        std::process::exit(1);
    }
}
