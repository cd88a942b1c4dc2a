//! What each face adds to one operation: verifyUsername through the whole
//! router (every layer, authentication, the lookup) over REST and over
//! GraphQL, in-process, without sockets, one request at a time, the two
//! transports taking turns so a machine that slows down slows both.
//! Run: `cargo bench --bench transports` (prints figures; asserts nothing).
//! `BENCH_ONLY=graphql` (or `rest`) runs one face only, for a profiler.
// Tests and benchmarks fail by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{body::Body, http::Request};
use customer_registration::{
    clock::SystemClock,
    config::Settings,
    service::hosts,
    startup::{Application, router},
};
use http_body_util::BodyExt;
use tower::ServiceExt;

const ROUNDS: usize = 15;
const PER_ROUND: usize = 2_000;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        database_url: std::env::var("BENCH_DATABASE_URL").unwrap_or_default(),
        ..Default::default()
    };
    settings.secrets.token_key = Some("bench-token-key".to_owned().into());
    settings.secrets.password_pepper = Some("bench-password-pepper".to_owned().into());
    // The bench measures the faces, not the flood limit.
    settings.quotas.verify_per_host.limit = 0;
    let app = Application::build(settings, Arc::new(SystemClock))
        .await
        .unwrap();
    let core = app.core.clone();
    let credentials = hosts::create_host(&core, "bench").await.unwrap();
    let token =
        hosts::issue_access_token(&core, &credentials.client_id, &credentials.client_secret)
            .await
            .unwrap()
            .access_token;
    let bearer = format!("Bearer {token}");
    let app = router(core);

    let rest = || {
        Request::get("/b2b/customer/auth/verifyUsername?username=%2B14155550123")
            .header("authorization", &bearer)
            .body(Body::empty())
            .unwrap()
    };
    let graphql = || {
        Request::post("/graphql")
            .header("authorization", &bearer)
            .header("content-type", "application/json")
            .body(Body::from(
                r#"{"query":"query($u: String!) { verifyUsername(username: $u) { username exists } }","variables":{"u":"+14155550123"}}"#,
            ))
            .unwrap()
    };
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let faces: Vec<(&str, &dyn Fn() -> Request<Body>)> = [
        ("rest", &rest as &dyn Fn() -> Request<Body>),
        ("graphql", &graphql),
    ]
    .into_iter()
    .filter(|(name, _)| only.is_empty() || only == *name)
    .collect();

    // Warm-up: the token cache, the parsed document, the pool.
    for (_, make) in &faces {
        for _ in 0..200 {
            let response = app.clone().oneshot(make()).await.unwrap();
            assert!(response.status().is_success());
            response.into_body().collect().await.unwrap();
        }
    }
    let mut per_request: Vec<Vec<Duration>> = vec![Vec::new(); faces.len()];
    for _ in 0..ROUNDS {
        for (i, (_, make)) in faces.iter().enumerate() {
            let started = Instant::now();
            for _ in 0..PER_ROUND {
                let response = app.clone().oneshot(make()).await.unwrap();
                response.into_body().collect().await.unwrap();
            }
            per_request[i].push(started.elapsed() / PER_ROUND as u32);
        }
    }
    println!("verifyUsername in-process, one at a time, median of {ROUNDS} rounds of {PER_ROUND}:");
    let mut medians = Vec::new();
    for ((name, _), times) in faces.iter().zip(&mut per_request) {
        times.sort();
        let median = times[times.len() / 2];
        medians.push(median);
        println!(
            "  {name:<8} {:>7.1} µs a request (fastest round {:.1} µs)",
            median.as_secs_f64() * 1e6,
            times[0].as_secs_f64() * 1e6
        );
    }
    if let [rest, graphql] = medians[..] {
        println!(
            "  GraphQL costs {:.1} µs more, {:.2}× REST",
            (graphql.as_secs_f64() - rest.as_secs_f64()) * 1e6,
            graphql.as_secs_f64() / rest.as_secs_f64()
        );
    }
}
