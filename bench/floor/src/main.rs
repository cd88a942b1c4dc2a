//! The floor for bench/run (issue 12): what the machine, not the service's
//! code, allows.
//!
//! `floor serve --database-url URL [--listen ADDR]` serves
//! - `POST /register`: the same kind of writes as one registration, in ONE
//!   transaction: a registration row and its outbox rows (an SMS, plus an
//!   email when the body has one);
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
    PgPool, SqlitePool,
    postgres::PgPoolOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions},
};

const USAGE: &str = "usage: floor serve --database-url URL [--listen ADDR]\n       floor argon2 [--seconds S] [--threads N]";

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
    State(db): State<Arc<Db>>,
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

async fn verify(
    State(db): State<Arc<Db>>,
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
            .journal_mode(SqliteJournalMode::Wal);
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

async fn serve(url: &str, listen: &str) -> Result<(), String> {
    let db = Arc::new(connect(url).await?);
    let app = Router::new()
        .route("/register", post(register))
        .route("/verify", get(verify))
        .with_state(db);
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

fn run(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("serve") => {
            let url = option(args, "--database-url").ok_or(USAGE)?;
            let listen = option(args, "--listen").unwrap_or_else(|| "127.0.0.1:0".to_owned());
            tokio::runtime::Runtime::new()
                .map_err(|e| e.to_string())?
                .block_on(serve(&url, &listen))
        }
        Some("argon2") => {
            let seconds = option(args, "--seconds")
                .map(|s| s.parse::<f64>())
                .transpose()
                .map_err(|e| format!("--seconds: {e}"))?
                .unwrap_or(5.0);
            let threads = option(args, "--threads")
                .map(|s| s.parse::<usize>())
                .transpose()
                .map_err(|e| format!("--threads: {e}"))?
                .unwrap_or(2);
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
