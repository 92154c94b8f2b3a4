//! End to end, what a user waits for: webhook -> rule -> WASM action `succeeded`.
//!
//! - **raw axum**: the baseline, a handler that parses and echoes the JSON, loaded with the
//!   same generator (`CONNECTIONS` keep-alive HTTP/1.1 connections on loopback), req/s.
//! - **burst, YAML rule**: a fresh server with the example packs and a YAML rule on hook
//!   `pipe` that runs `demo.greet` (a WASM action) for every webhook. The generator posts for
//!   `PIPE_SECS` (default 2) s; the figure is executions/s from the first post until the last
//!   execution has `succeeded` (every accepted webhook's execution, counted in the store), and
//!   its ratio to raw axum's req/s. The backlog (accepted webhooks whose action has not
//!   succeeded yet) is sampled every 100 ms and its peak reported.
//! - **burst, WASM rule**: the same through the example rule `demo.push_to_main` (criteria,
//!   then the `branch_filter` rule component) on hook `github`.
//! - **latency**: webhooks posted at a steady rate, 20% of the YAML burst's executions/s, for
//!   `PIPE_LATENCY_SECS` (default 5) s, each with its own sequence number; for each, the time
//!   from its 202 to its execution's `running` (the action's start), p50 / p99 / max.
//!
//! Each measurement runs on a fresh runtime (2 worker threads, shared by the servers and the
//! generator, as in the ingest bench) and a fresh server and store. With
//! `STORMHOOK_BENCH_DATABASE_URL` (or `STORMHOOK_TEST_DATABASE_URL`) set, the bursts and the
//! latency run on PostgreSQL too, on one node and on `PIPE_PG_NODES` (default 3) nodes in this
//! process sharing one schema (the generator spreads its connections over the nodes).
//!
//! Run: `cargo bench -p stormhook-tests --bench pipeline`. `PIPE_ONLY=sqlite` skips
//! PostgreSQL; `PIPE_PHASES=yaml,wasm,latency` picks phases; `PIPE_LATENCY_RATE` sets the
//! latency phase's rate (webhooks/s) instead of 20% of the YAML burst. Results: `BENCHMARKS.md`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::http::StatusCode;
use axum::routing::post;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use stormhook_storage::{ExecutionQuery, Store};
use tokio::net::TcpStream;

/// The allocator the `stormhook` binary uses (`host/app/src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "common/load.rs"]
mod load;

#[path = "common/backend.rs"]
mod backend;

use backend::{Backend, Server};

/// As in the issue's measurement (wrk with 64 connections).
const CONNECTIONS: usize = 64;
/// A GitHub push to main (the example rule component matches it).
const BODY: &str = r#"{"seq":"burst","ref":"refs/heads/main","before":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","after":"59b20b8d5c6ff8d09518216e25b35f0f4c56e7c9","repository":{"id":35129377,"name":"public-repo","full_name":"baxterthehacker/public-repo"},"pusher":{"name":"baxterthehacker","email":"baxterthehacker@users.noreply.github.com"},"sender":{"login":"baxterthehacker","id":6752317}}"#;
/// The YAML rule: every webhook on hook `pipe` runs `demo.greet`, named after its `seq`.
const YAML_RULE: &str = "name: pipe\ntrigger:\n  type: core.st2.webhook\n  parameters:\n    url: pipe\naction:\n  ref: demo.greet\n  parameters:\n    name: \"{{ trigger.body.seq }}\"\n";

async fn echo(Json(body): Json<serde_json::Value>) -> (StatusCode, Json<serde_json::Value>) {
    (StatusCode::ACCEPTED, Json(body))
}

/// Raw axum's req/s with the same generator.
async fn raw() -> f64 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let app = axum::Router::new().route("/api/v1/webhooks/pipe", post(echo));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let (rps, other, errors) = load::load(
        addr,
        "/api/v1/webhooks/pipe",
        None,
        CONNECTIONS,
        BODY,
        Duration::from_secs(1),
        Duration::from_secs(3),
    )
    .await;
    assert_eq!((other, errors), (0, 0), "the raw side failed requests");
    server.abort();
    rps
}

/// What a burst gave.
struct Burst {
    accepted: u64,
    refused: u64,
    /// From the first post to the last execution done.
    elapsed: Duration,
    /// How long the posting took.
    posting: Duration,
    peak_backlog: u64,
    failed: u64,
}

impl Burst {
    fn rate(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64()
    }
}

/// How many executions of `demo.greet` are in `statuses`.
async fn count(store: &dyn Store, statuses: &[&str]) -> u64 {
    let query = ExecutionQuery {
        statuses: statuses.iter().map(|s| (*s).to_owned()).collect(),
        action: Some("demo.greet".into()),
        limit: Some(0),
        ..ExecutionQuery::default()
    };
    store.list_executions(&query).await.expect("counting").total
}

const DONE: &[&str] = &["succeeded", "failed", "timeout", "abandoned", "canceled"];

/// Posts `BODY` to `path` on `servers` (connections spread over them) for `secs`, then waits
/// until every accepted webhook's execution is done.
async fn burst(servers: &[Server], path: &'static str, secs: Duration) -> Burst {
    let store = servers[0].store();
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..CONNECTIONS {
        let server = &servers[i % servers.len()];
        let addr = server.base.trim_start_matches("http://").to_owned();
        let key = server.key.clone();
        let (accepted, refused, stop) = (accepted.clone(), refused.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(&addr).await.expect("connect");
            stream.set_nodelay(true).unwrap();
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .expect("handshake");
            tokio::spawn(conn);
            while !stop.load(Ordering::Relaxed) {
                let request = hyper::Request::post(path)
                    .header("host", &addr)
                    .header("content-type", "application/json")
                    .header("x-github-event", "push")
                    .header("st2-api-key", &key)
                    .body(Full::new(Bytes::from_static(BODY.as_bytes())))
                    .unwrap();
                let response = sender.send_request(request).await.expect("a response");
                let ok = response.status().is_success();
                let _ = response.into_body().collect().await;
                if ok { &accepted } else { &refused }.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut peak_backlog = 0;
    let mut posting = None;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if posting.is_none() && started.elapsed() >= secs {
            stop.store(true, Ordering::Relaxed);
            for task in tasks.drain(..) {
                task.await.unwrap();
            }
            posting = Some(started.elapsed());
        }
        let done = count(store.as_ref(), DONE).await;
        let so_far = accepted.load(Ordering::Relaxed);
        peak_backlog = peak_backlog.max(so_far.saturating_sub(done));
        if posting.is_some() && done >= so_far {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "the backlog did not drain: {done} of {so_far} done"
        );
    }
    let elapsed = started.elapsed();
    if let Some(one) = store
        .list_executions(&ExecutionQuery {
            action: Some("demo.greet".into()),
            limit: Some(1),
            ..ExecutionQuery::default()
        })
        .await
        .unwrap()
        .items
        .first()
    {
        eprintln!(
            "(one execution: document {} bytes, run parameters {} bytes)",
            one.document.to_string().len(),
            one.run_parameters.to_string().len()
        );
    }
    let failed = count(store.as_ref(), DONE).await - count(store.as_ref(), &["succeeded"]).await;
    Burst {
        accepted: accepted.load(Ordering::Relaxed),
        refused: refused.load(Ordering::Relaxed),
        elapsed,
        posting: posting.unwrap(),
        peak_backlog,
        failed,
    }
}

/// The microseconds since the epoch of a stored timestamp.
fn micros(timestamp: &str) -> i64 {
    stormhook_storage::ids::parse_time(timestamp)
        .expect("a stored timestamp")
        .timestamp_micros()
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// Latency percentiles (ms) from 202 to action start, at `rate` webhooks/s for `secs`.
async fn latency(servers: &[Server], rate: f64, secs: Duration) -> (f64, f64, f64, usize) {
    let store = servers[0].store();
    let clients: Vec<(reqwest::Client, String)> = servers
        .iter()
        .map(|s| (s.client(), s.url("/api/v1/webhooks/pipe")))
        .collect();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let total = (rate * secs.as_secs_f64()) as usize;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut posts = Vec::with_capacity(total);
    for seq in 0..total {
        ticker.tick().await;
        let (client, url) = clients[seq % clients.len()].clone();
        posts.push(tokio::spawn(async move {
            let resp = client
                .post(url)
                .header("x-github-event", "push")
                .json(&serde_json::json!({"seq": seq.to_string()}))
                .send()
                .await
                .expect("a response");
            assert_eq!(resp.status(), 202);
            now_micros()
        }));
    }
    let mut accepted_at = Vec::with_capacity(total);
    for post in posts {
        accepted_at.push(post.await.unwrap());
    }
    let started = Instant::now();
    // The warm-up execution is one of them.
    while count(store.as_ref(), DONE).await < total as u64 + 1 {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the latency run did not drain"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = store
        .list_executions(&ExecutionQuery {
            action: Some("demo.greet".into()),
            ..ExecutionQuery::default()
        })
        .await
        .unwrap()
        .items;
    let mut waits = Vec::with_capacity(total);
    for execution in all {
        let doc = &execution.document;
        // The warm-up execution has no sequence number.
        let Some(seq) = doc["parameters"]["name"]
            .as_str()
            .and_then(|s| s.parse::<usize>().ok())
        else {
            continue;
        };
        let running = doc["log"]
            .as_array()
            .and_then(|log| log.iter().find(|e| e["status"] == "running"))
            .and_then(|e| e["timestamp"].as_str())
            .expect("a running entry");
        waits.push((micros(running) - accepted_at[seq]) as f64 / 1e3);
    }
    waits.sort_by(f64::total_cmp);
    let at = |q: f64| waits[((waits.len() as f64 * q) as usize).min(waits.len() - 1)];
    (at(0.5), at(0.99), waits[waits.len() - 1], waits.len())
}

/// Runs `measurement` on a runtime of its own, which ends whatever the servers left running.
fn fresh<F: std::future::Future>(measurement: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let result = runtime.block_on(measurement);
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

async fn servers(backend: &Backend, nodes: usize) -> Vec<Server> {
    let servers = Server::start_nodes(
        backend,
        nodes,
        vec![("pipe".to_owned(), YAML_RULE.to_owned())],
        true,
    )
    .await;
    // Warm up: the first call of each component compiles or loads it.
    for server in &servers {
        let resp = server
            .client()
            .post(server.url("/api/v1/executions?wait=30"))
            .json(&serde_json::json!({"action": "demo.greet", "parameters": {"name": "warm"}}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
    }
    servers
}

async fn finish(servers: Vec<Server>) {
    // The first node owns the PostgreSQL schema: it finishes last.
    for server in servers.into_iter().rev() {
        server.finish().await;
    }
}

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// Whether `PIPE_PHASES` (a comma-separated list of `yaml`, `wasm`, `latency`; default all)
/// asks for this phase.
fn phase(name: &str) -> bool {
    std::env::var("PIPE_PHASES").map_or(true, |v| v.split(',').any(|p| p.trim() == name))
}

fn main() {
    let secs = env_secs("PIPE_SECS", 2);
    let latency_secs = env_secs("PIPE_LATENCY_SECS", 5);
    let pg_nodes: usize = std::env::var("PIPE_PG_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut setups: Vec<(Backend, usize)> = Vec::new();
    for backend in Backend::all() {
        match backend {
            Backend::Sqlite => setups.push((backend, 1)),
            Backend::Postgres(_) if std::env::var("PIPE_ONLY").is_ok_and(|v| v == "sqlite") => {}
            Backend::Postgres(_) => {
                setups.push((backend.clone(), 1));
                if pg_nodes > 1 {
                    setups.push((backend, pg_nodes));
                }
            }
        }
    }
    let raw_rps = fresh(raw());
    println!("pipeline/raw axum echo: {raw_rps:.0} req/s ({CONNECTIONS} connections)");
    let mut table = Vec::new();
    for (backend, nodes) in &setups {
        let name = format!(
            "{}/{nodes} node{}",
            backend.name(),
            if *nodes == 1 { "" } else { "s" }
        );
        let mut yaml_rate = 0.0;
        for (label, path) in [
            ("YAML rule", "/api/v1/webhooks/pipe"),
            ("WASM rule", "/api/v1/webhooks/github"),
        ] {
            if !phase(if label == "YAML rule" { "yaml" } else { "wasm" }) {
                continue;
            }
            let b = fresh(async {
                let servers = servers(backend, *nodes).await;
                let b = burst(&servers, path, secs).await;
                finish(servers).await;
                b
            });
            let rate = b.rate();
            if label == "YAML rule" {
                yaml_rate = rate;
            }
            println!(
                "pipeline/{name}/burst {label}: {} webhooks accepted in {:.2} s ({} refused), all done after {:.2} s ({} not succeeded): {rate:.0} executions/s, ratio {:.3} of raw axum; backlog peak {}",
                b.accepted,
                b.posting.as_secs_f64(),
                b.refused,
                b.elapsed.as_secs_f64(),
                b.failed,
                rate / raw_rps,
                b.peak_backlog,
            );
            table.push(format!(
                "| {name} | {label} | {} | {:.2} s | {rate:.0} | {:.3} | {} |",
                b.accepted,
                b.elapsed.as_secs_f64(),
                rate / raw_rps,
                b.peak_backlog
            ));
        }
        if !phase("latency") {
            continue;
        }
        let rate = std::env::var("PIPE_LATENCY_RATE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or((yaml_rate * 0.2).max(1.0));
        let (p50, p99, max, n) = fresh(async {
            let servers = servers(backend, *nodes).await;
            let l = latency(&servers, rate, latency_secs).await;
            finish(servers).await;
            l
        });
        println!(
            "pipeline/{name}/latency at {rate:.0} webhooks/s (20% of the YAML burst), 202 to action start over {n} webhooks: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms"
        );
        table.push(format!(
            "| {name} | latency at {rate:.0}/s | {n} | p50 {p50:.2} ms | p99 {p99:.2} ms | max {max:.2} ms | |"
        ));
    }
    println!("\n| store | measure | webhooks | time | executions/s | ratio | backlog peak |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    println!("| raw axum | {CONNECTIONS} connections | | | {raw_rps:.0} req/s | | |");
    for row in table {
        println!("{row}");
    }
}
