//! Throughput and latency of register and confirm over HTTP, against the
//! real service in-process on SQLite (or `BENCH_DATABASE_URL`).
//! Run: `cargo bench --bench registration` (prints figures; asserts nothing).
// Tests and benchmarks fail by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use serde_json::{Value, json};

const REGISTRATIONS: usize = 400;
const CONCURRENCY: usize = 16;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let app = common::service(dir.path()).await;
    let address = format!("http://{}", app.local_addr().unwrap());
    let core = app.core.clone();
    tokio::spawn(app.run());
    let token = common::access_token(&core).await;
    let client = reqwest::Client::new();
    println!(
        "database: {}",
        core.settings
            .database_url()
            .split('?')
            .next()
            .unwrap_or_default()
    );
    println!(
        "cores: {}, concurrency: {CONCURRENCY}, hashing slots: {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        core.settings.limits.max_concurrent_hashes
    );

    let phones: Vec<String> = (0..REGISTRATIONS)
        .map(|i| format!("+62812{:07}", 1_000_000 + i))
        .collect();
    let started = Instant::now();
    let latencies = run(&phones, |phone| {
        let client = client.clone();
        let (address, token) = (address.clone(), token.clone());
        async move {
            let body = json!({
                "phone": phone, "name": "Bench Customer", "birthDate": "1990-12-31", "birthPlace": "Jakarta",
                "email": format!("{}@bench.test", &phone[1..]), "gender": true, "countryId": "ID", "accountGroupId": "01"
            });
            let response = client
                .post(format!("{address}/b2b/customer/register"))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        }
    })
    .await;
    report("register", started.elapsed(), latencies);

    // Wait for the dispatcher, then read every token from the development outbox.
    let sms_file = core.settings.outbox_dir().join("sms.jsonl");
    let tokens = loop {
        let text = std::fs::read_to_string(&sms_file).unwrap_or_default();
        if text.lines().count() >= REGISTRATIONS {
            break text
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .map(|m| {
                    (
                        m["to"].as_str().unwrap().to_owned(),
                        m["text"].as_str().unwrap()[..9].to_owned(),
                    )
                })
                .collect::<std::collections::HashMap<_, _>>();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let started = Instant::now();
    let latencies = run(&phones, |phone| {
        let client = client.clone();
        let (address, token) = (address.clone(), token.clone());
        let sms = tokens[&phone].clone();
        async move {
            let body = json!({"username": phone, "password": "5F4DCC3B5AA765D61D8327DEB882CF99", "token": sms});
            loop {
                let response = client
                    .post(format!("{address}/b2b/customer/register/confirm"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                match response.status().as_u16() {
                    200 => break,
                    503 => tokio::time::sleep(Duration::from_millis(20)).await,
                    status => panic!("confirm answered {status}: {}", response.text().await.unwrap()),
                }
            }
        }
    })
    .await;
    report(
        "confirm (Argon2id 19 MiB, t=2)",
        started.elapsed(),
        latencies,
    );
    println!("database statements: {}", core.metrics.db_statements());
}

async fn run<F, Fut>(phones: &[String], call: F) -> Vec<Duration>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = ()>,
{
    stream::iter(phones.iter().cloned())
        .map(|phone| {
            let call = call(phone);
            async move {
                let started = Instant::now();
                call.await;
                started.elapsed()
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await
}

fn report(name: &str, total: Duration, mut latencies: Vec<Duration>) {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "{name}: {} requests in {:.2} s = {:.0}/s; latency p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        latencies.len(),
        total.as_secs_f64(),
        latencies.len() as f64 / total.as_secs_f64(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.95).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3
    );
}
