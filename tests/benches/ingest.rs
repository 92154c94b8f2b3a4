//! Durable ingest throughput: webhooks per second that Stormhook accepts (authenticated, parsed,
//! committed to SQLite with WAL + synchronous=FULL through group commit, answered 202) as a ratio
//! to a raw axum handler that parses and echoes the same JSON, both measured in this run with
//! the same in-repo load generator: 256 keep-alive HTTP/1.1 connections on loopback.
//!
//! The two sides alternate for `INGEST_ROUNDS` rounds (default 3); each round gives a ratio,
//! and the median is the result (for an even number of rounds, the mean of the middle two).
//!
//! Run: `cargo bench -p stormhook-tests --bench ingest`. `INGEST_SECS` sets the measured time
//! per side and round (default 5, after 1 s of warm-up); `INGEST_ONLY=stormhook` skips the raw
//! side, for profiling (its ratios then print as NaN). Results: `BENCHMARKS.md`.

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::routing::post;
use stormhook_tests::TestServer;

/// The allocator the `stormhook` binary uses (`host/app/src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "common/load.rs"]
mod load;

use load::load;

const CONNECTIONS: usize = 256;
const BODY: &str = r#"{"ref":"refs/heads/main","before":"6113728f27ae82c7b1a177c8d03f9e96e0adf246","after":"59b20b8d5c6ff8d09518216e25b35f0f4c56e7c9","repository":{"id":35129377,"name":"public-repo","full_name":"baxterthehacker/public-repo"},"pusher":{"name":"baxterthehacker","email":"baxterthehacker@users.noreply.github.com"},"sender":{"login":"baxterthehacker","id":6752317}}"#;

async fn echo(Json(body): Json<serde_json::Value>) -> (StatusCode, Json<serde_json::Value>) {
    (StatusCode::ACCEPTED, Json(body))
}

/// One measurement of the raw axum echo.
async fn raw(warmup: Duration, secs: Duration) -> (f64, u64, u64) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let app = axum::Router::new().route("/api/v1/webhooks/github", post(echo));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let result = load(addr, "/api/v1/webhooks/github", None, CONNECTIONS, BODY, warmup, secs).await;
    server.abort();
    result
}

/// One measurement of Stormhook, on a fresh server and store; also returns how many trigger
/// instances the store holds afterwards.
async fn stormhook(warmup: Duration, secs: Duration) -> (f64, u64, u64, u64) {
    // The rule registers the webhook, and the engine evaluates every accepted instance, but
    // its criteria never match: this measures acceptance, not action runs (each of which adds
    // its own transactions; executions are measured on their own).
    let rule = (
        "github".to_owned(),
        "name: github\ntrigger:\n  type: core.st2.webhook\n  parameters:\n    url: github\ncriteria:\n  trigger.body.never:\n    type: exists\n    pattern: x\naction:\n  ref: core.noop\n".to_owned(),
    );
    let server = TestServer::builder().rules([rule]).start().await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let (rps, other, errors) = load(
        addr,
        "/api/v1/webhooks/github",
        Some(server.key.clone()),
        CONNECTIONS,
        BODY,
        warmup,
        secs,
    )
    .await;
    let resp = server
        .client()
        .get(server.url("/api/v1/triggerinstances?limit=1"))
        .send()
        .await
        .unwrap();
    let stored: u64 = resp.headers()["x-total-count"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    (rps, other, errors, stored)
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Runs one measurement on a runtime of its own. Dropping the runtime ends the tasks a Stormhook
/// server leaves behind (its rules engine and checkpoints), which would otherwise run on into
/// the next round.
fn on_fresh_runtime<F: std::future::Future>(measurement: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let result = runtime.block_on(measurement);
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

fn main() {
    let secs = Duration::from_secs(env_number("INGEST_SECS", 5));
    let rounds = env_number("INGEST_ROUNDS", 3).max(1);
    let warmup = Duration::from_secs(1);
    // `INGEST_ONLY=stormhook` skips the raw side, for profiling.
    let only_stormhook = std::env::var("INGEST_ONLY").is_ok_and(|v| v == "stormhook");

    // The raw side alone swings by a third between runs on a shared machine, so the two sides
    // alternate, round after round, and each round gives its own ratio; the median of the
    // rounds is the result.
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let (raw_rps, raw_other, raw_errors) = if only_stormhook {
            (f64::NAN, 0, 0)
        } else {
            on_fresh_runtime(raw(warmup, secs))
        };
        let (sh_rps, sh_other, sh_errors, stored) = on_fresh_runtime(stormhook(warmup, secs));
        let ratio = sh_rps / raw_rps;
        ratios.push(ratio);
        println!(
            "ingest/round {round}: raw axum echo {raw_rps:>7.0} req/s (non-2xx {raw_other}, errors {raw_errors}); \
             stormhook durable {sh_rps:>7.0} req/s (non-2xx {sh_other}, errors {sh_errors}, trigger instances stored {stored}); \
             ratio {ratio:.2}"
        );
    }
    ratios.sort_by(f64::total_cmp);
    let middle = ratios.len() / 2;
    let median = if ratios.len() % 2 == 1 {
        ratios[middle]
    } else {
        (ratios[middle - 1] + ratios[middle]) / 2.0
    };
    println!(
        "ingest/ratio stormhook/raw, median of {rounds} rounds:  {median:.2}  (target >= 0.5)"
    );
    println!(
        "{CONNECTIONS} connections, {} s measured after {} s warm-up per side and round, 2 tokio worker threads shared by the servers and the load generator",
        secs.as_secs(),
        warmup.as_secs()
    );
}
