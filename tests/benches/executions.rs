//! Execution throughput and latency, through the HTTP API of a real server on loopback.
//!
//! - latency: one `core.noop` (and one `demo.greet` WASM action) at a time with
//!   `POST /executions?wait=10`, from the request to the finished execution;
//! - throughput: `EXEC_COUNT` (default 2000) `core.noop` executions requested by 32 concurrent
//!   clients, timed from the first request until the last one has `succeeded`.
//!
//! Every execution is stored `requested`, then moved `scheduled`, `running` and `succeeded`
//! (each move its own durable SQLite transaction), and dispatches an action trigger instance.
//!
//! With `STORMHOOK_BENCH_DATABASE_URL` (or `STORMHOOK_TEST_DATABASE_URL`) set, the same runs
//! on PostgreSQL after SQLite (a fresh server, in a fresh schema; `common/backend.rs`), and a
//! last line puts the two side by side.
//!
//! Run: `cargo bench -p stormhook-tests --bench executions`. Results: `BENCHMARKS.md`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "common/backend.rs"]
mod backend;

use backend::{Backend, Server};

fn main() {
    let count: usize = std::env::var("EXEC_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let mut summary = Vec::new();
    for backend in Backend::all() {
        // A runtime per backend: dropping it ends whatever the last server left running.
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let figures = tokio.block_on(measure(&backend, count));
        tokio.shutdown_timeout(Duration::from_secs(5));
        summary.push(format!("{}: {figures}", backend.name()));
    }
    println!("executions/side by side: {}", summary.join("; "));
}

/// The latencies and the throughput on `backend`, printed; returns them in one line.
async fn measure(backend: &Backend, count: usize) -> String {
    let name = backend.name();
    let mut figures = Vec::new();
    {
        let server = Server::start(backend, Vec::new(), true).await;
        let client = server.client();
        for (action, params) in [
            ("core.noop", json!({})),
            ("demo.greet", json!({"name": "Ada"})),
        ] {
            let mut times = Vec::new();
            for _ in 0..60 {
                let started = Instant::now();
                let e: Value = client
                    .post(server.url("/api/v1/executions?wait=10"))
                    .json(&json!({"action": action, "parameters": params}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_eq!(e["status"], "succeeded", "{e}");
                times.push(started.elapsed());
            }
            // The first ten warm up (compile cache, connection pool).
            let times = &mut times[10..];
            times.sort();
            let (median, p90) = (
                times[times.len() / 2].as_secs_f64() * 1e3,
                times[times.len() * 9 / 10].as_secs_f64() * 1e3,
            );
            println!(
                "executions/{name}/latency {action:<11} median {median:>7.2} ms  p90 {p90:>7.2} ms  (request to succeeded, ?wait)",
            );
            figures.push(format!("{action} median {median:.2} ms p90 {p90:.2} ms"));
        }

        let before = total(&server, "succeeded").await;
        let started = Instant::now();
        let per_client = count / 32;
        let mut clients = Vec::new();
        for _ in 0..32 {
            let (client, url) = (client.clone(), server.url("/api/v1/executions"));
            clients.push(tokio::spawn(async move {
                for _ in 0..per_client {
                    let resp = client
                        .post(&url)
                        .json(&json!({"action": "core.noop"}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(resp.status(), 201);
                }
            }));
        }
        for c in clients {
            c.await.unwrap();
        }
        let requested = started.elapsed();
        let target = before + (per_client * 32) as u64;
        loop {
            if total(&server, "succeeded").await >= target {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "executions stalled"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = started.elapsed();
        let rate = (per_client * 32) as f64 / elapsed.as_secs_f64();
        println!(
            "executions/{name}/throughput core.noop: {} requested in {:.2} s ({:.0}/s), all succeeded after {:.2} s: {rate:.0} executions/s",
            per_client * 32,
            requested.as_secs_f64(),
            (per_client * 32) as f64 / requested.as_secs_f64(),
            elapsed.as_secs_f64(),
        );
        figures.push(format!("throughput {rate:.0} executions/s"));
        server.finish().await;
    }
    figures.join(", ")
}

async fn total(server: &Server, status: &str) -> u64 {
    let resp = server
        .client()
        .get(server.url(&format!("/api/v1/executions?status={status}&limit=1")))
        .send()
        .await
        .unwrap();
    resp.headers()["x-total-count"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}
