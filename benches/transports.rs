//! What each face adds to one operation through the whole router (every
//! layer, authentication, the core, the database) over REST and over
//! GraphQL, in-process, without sockets, one request at a time, the two
//! transports taking turns so a machine that slows down slows both. Prints
//! each face's median wall time a request and the process's CPU time a
//! request (every thread; the delivery loop runs beside the requests and
//! its CPU is counted, unless `BENCH_DELIVERY=off`).
//! Run: `cargo bench --bench transports` (prints figures; asserts nothing).
//! `BENCH_OPERATION=register` measures register with email instead of
//! verifyUsername (each request a new phone, every quota counted, limits
//! out of reach). `BENCH_ONLY=graphql` (or `rest`) runs one face only, for
//! a profiler; `BENCH_ROUNDS` sets the rounds (default 15): under
//! `valgrind --tool=callgrind` the instructions of one request are the
//! difference between two round counts over the requests between them.
// Tests and benchmarks fail by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use std::{
    cell::Cell,
    time::{Duration, Instant},
};

use axum::{body::Body, http::Request};
use customer_registration::startup::router;
use http_body_util::BodyExt;
use tower::ServiceExt;

const DEFAULT_ROUNDS: usize = 15;
/// Clock ticks a second in `/proc/self/stat` (`USER_HZ`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// Builds the request numbered `n` (a fresh phone for register).
type MakeRequest = dyn Fn(u64) -> Request<Body>;

/// Both faces of one operation: a request for each, given a fresh number.
struct Operation {
    name: &'static str,
    per_round: usize,
    rest: Box<MakeRequest>,
    graphql: Box<MakeRequest>,
}

fn operation(bearer: String) -> Operation {
    let authorized = move |request: http::request::Builder| {
        request
            .header("authorization", &bearer)
            .header("content-type", "application/json")
    };
    match std::env::var("BENCH_OPERATION").as_deref() {
        Ok("register") => {
            let input = |n: u64| {
                format!(
                    r#"{{"phone":"+62812{n:07}","name":"Septian Cahyo","birthDate":"1990-12-31","birthPlace":"Jakarta","email":"62812{n:07}@example.com","gender":true,"countryId":"ID","sourceId":"01011","accountGroupId":"01"}}"#
                )
            };
            let rest_auth = authorized.clone();
            Operation {
                name: "register with email",
                per_round: 200,
                rest: Box::new(move |n| {
                    rest_auth(Request::post("/b2b/customer/register"))
                        .body(Body::from(input(n)))
                        .unwrap()
                }),
                graphql: Box::new(move |n| {
                    authorized(Request::post("/graphql"))
                        .body(Body::from(format!(
                            r#"{{"query":"mutation($i: RegisterInput!) {{ register(input: $i) {{ id username phone tokenPrefix tokenType attempt active expiryMinutes expiryTimestamp requestTimestamp accountGroupId attemptsRemaining smsResendsRemaining emailResendsRemaining nextResendAt }} }}","variables":{{"i":{}}}}}"#,
                            input(n)
                        )))
                        .unwrap()
                }),
            }
        }
        Ok("verify_username") | Err(_) => {
            let rest_auth = authorized.clone();
            Operation {
                name: "verifyUsername",
                per_round: 2_000,
                rest: Box::new(move |_| {
                    rest_auth(Request::get(
                        "/b2b/customer/auth/verifyUsername?username=%2B14155550123",
                    ))
                    .body(Body::empty())
                    .unwrap()
                }),
                graphql: Box::new(move |_| {
                    authorized(Request::post("/graphql"))
                        .body(Body::from(
                            r#"{"query":"query($u: String!) { verifyUsername(username: $u) { username exists } }","variables":{"u":"+14155550123"}}"#,
                        ))
                        .unwrap()
                }),
            }
        }
        Ok(other) => panic!("BENCH_OPERATION must be register or verify_username, not {other:?}"),
    }
}

/// The process's CPU time so far, every thread, user and system.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_secs_f64(ticks as f64 / TICKS_PER_SECOND)
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let app = common::service(dir.path()).await;
    let core = app.core.clone();
    let token = common::access_token(&core).await;
    let operation = operation(format!("Bearer {token}"));
    // The delivery loop runs beside the requests, as in the service, unless
    // BENCH_DELIVERY=off: a register's messages are half of its cost.
    if std::env::var("BENCH_DELIVERY").as_deref() != Ok("off") {
        tokio::spawn(app.run());
    }
    let app = router(core);

    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let rounds: usize = std::env::var("BENCH_ROUNDS").map_or(DEFAULT_ROUNDS, |r| {
        r.parse().expect("BENCH_ROUNDS is a number of rounds")
    });
    let faces: Vec<(&str, &MakeRequest)> =
        [("rest", &*operation.rest), ("graphql", &*operation.graphql)]
            .into_iter()
            .filter(|(name, _)| only.is_empty() || only == *name)
            .collect();
    // Every request gets a number of its own (a new phone for register).
    let next = Cell::new(0u64);
    let number = || {
        next.set(next.get() + 1);
        next.get()
    };

    // Warm-up: the token cache, the parsed document, the pool.
    for (_, make) in &faces {
        for _ in 0..operation.per_round / 10 {
            let response = app.clone().oneshot(make(number())).await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            response.into_body().collect().await.unwrap();
        }
    }
    let mut wall: Vec<Vec<Duration>> = vec![Vec::new(); faces.len()];
    let mut cpu = vec![Duration::ZERO; faces.len()];
    for _ in 0..rounds {
        for (i, (_, make)) in faces.iter().enumerate() {
            let (started, cpu_before) = (Instant::now(), process_cpu());
            for _ in 0..operation.per_round {
                let response = app.clone().oneshot(make(number())).await.unwrap();
                assert!(response.status().is_success(), "{}", response.status());
                response.into_body().collect().await.unwrap();
            }
            wall[i].push(started.elapsed() / operation.per_round as u32);
            cpu[i] += process_cpu() - cpu_before;
        }
    }
    println!(
        "{} in-process, one at a time, {rounds} rounds of {}:",
        operation.name, operation.per_round
    );
    let mut medians = Vec::new();
    for (((name, _), times), cpu) in faces.iter().zip(&mut wall).zip(&cpu) {
        times.sort();
        let median = times[times.len() / 2];
        medians.push(median);
        println!(
            "  {name:<8} {:>7.1} µs a request, median round (fastest {:.1} µs); CPU {:.1} µs a request",
            median.as_secs_f64() * 1e6,
            times[0].as_secs_f64() * 1e6,
            cpu.as_secs_f64() * 1e6 / (rounds * operation.per_round) as f64
        );
    }
    if let [rest, graphql] = medians[..] {
        println!(
            "  GraphQL takes {:.1} µs more, {:.2}× REST",
            (graphql.as_secs_f64() - rest.as_secs_f64()) * 1e6,
            graphql.as_secs_f64() / rest.as_secs_f64()
        );
    }
}
