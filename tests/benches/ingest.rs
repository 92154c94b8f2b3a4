//! Durable ingest throughput: webhooks per second that Stormhook accepts (authenticated, parsed,
//! committed to SQLite with WAL + synchronous=FULL through group commit, answered 202) as a ratio
//! to a raw axum handler that parses and echoes the same JSON, both measured in this run with
//! the same in-repo load generator: 256 keep-alive HTTP/1.1 connections on loopback.
//!
//! The two sides alternate for `INGEST_ROUNDS` rounds (default 3); each round gives a ratio,
//! and the median is the result (for an even number of rounds, the mean of the middle two).
//!
//! With `STORMHOOK_BENCH_DATABASE_URL` (or `STORMHOOK_TEST_DATABASE_URL`) set, each round
//! measures Stormhook on PostgreSQL too (a fresh schema per round; `common/backend.rs`), and
//! prints its WAL bytes per accepted event and rows written per second beside the ratios.
//!
//! Each round also measures SQLite with a GitHub-signed hook (`X-Hub-Signature-256` over the
//! body, a fresh `X-GitHub-Delivery` per request, no API key): the cost of verification and
//! replay protection beside the API-key hook; `INGEST_SIGNED=0` skips it, `INGEST_SIGNED=noid`
//! sends no delivery id (verification alone).
//!
//! Run: `cargo bench -p stormhook-tests --bench ingest`. `INGEST_SECS` sets the measured time
//! per side and round (default 5, after 1 s of warm-up); `INGEST_ONLY=stormhook` skips the raw
//! side, for profiling (its ratios then print as NaN). Results: `BENCHMARKS.md`.

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::routing::post;
/// The allocator the `stormhook` binary uses (`host/app/src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "common/load.rs"]
mod load;

use load::load;

#[path = "common/backend.rs"]
mod backend;

use backend::{Backend, Server};

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
    let result = load(
        addr,
        "/api/v1/webhooks/github",
        None,
        CONNECTIONS,
        BODY,
        warmup,
        secs,
    )
    .await;
    server.abort();
    result
}

/// What one measurement of Stormhook gave.
struct Measured {
    rps: f64,
    other: u64,
    errors: u64,
    /// Trigger instances the store holds afterwards.
    stored: u64,
    /// PostgreSQL only: WAL bytes per stored instance, and rows written per second, over the
    /// whole load (warm-up included), with the rows by table.
    wal_per_event: Option<f64>,
    rows_per_sec: Option<f64>,
    rows: Vec<(String, i64)>,
}

/// How the bench's sender proves itself.
#[derive(Clone, Copy, PartialEq)]
enum Sender {
    /// `St2-Api-Key`, as StackStorm's curl lines do.
    ApiKey,
    /// GitHub's `X-Hub-Signature-256` (secret in the datastore, encrypted) and a new
    /// `X-GitHub-Delivery` per request, so every delivery is verified and its id recorded.
    GitHub,
}

/// The GitHub-signed side's secret.
const SECRET: &str = "bench-secret";

/// One measurement of Stormhook on `backend`, on a fresh server and store.
async fn stormhook(
    backend: &Backend,
    sender: Sender,
    warmup: Duration,
    secs: Duration,
) -> Measured {
    // The rule registers the webhook, and the engine evaluates every accepted instance, but
    // its criteria never match: this measures acceptance, not action runs (each of which adds
    // its own transactions; executions are measured on their own).
    let verify = match sender {
        Sender::ApiKey => "",
        Sender::GitHub => "    verify: {preset: github, secret: {datastore: github_secret}}\n",
    };
    let rule = (
        "github".to_owned(),
        format!(
            "name: github\ntrigger:\n  type: core.st2.webhook\n  parameters:\n    url: github\n{verify}criteria:\n  trigger.body.never:\n    type: exists\n    pattern: x\naction:\n  ref: core.noop\n"
        ),
    );
    let mut server = Server::start(backend, vec![rule], false).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let (headers, unique) = match sender {
        Sender::ApiKey => (vec![("st2-api-key", server.key.clone())], None),
        Sender::GitHub => {
            let resp = server
                .client()
                .put(server.url("/api/v1/keys/github_secret"))
                .json(
                    &serde_json::json!({"name": "github_secret", "value": SECRET, "secret": true}),
                )
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success());
            use hmac::Mac as _;
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
            mac.update(BODY.as_bytes());
            let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
            // `INGEST_SIGNED=noid` leaves the delivery id out: verification alone, without
            // replay protection's row per event.
            let unique = match std::env::var("INGEST_SIGNED").as_deref() {
                Ok("noid") => None,
                _ => Some("x-github-delivery"),
            };
            (vec![("x-hub-signature-256", signature)], unique)
        }
    };
    let before = match server.database() {
        Some(db) => Some((db.wal_lsn().await, db.rows().await)),
        None => None,
    };
    let started = std::time::Instant::now();
    let (rps, other, errors) = load::load_with(
        addr,
        "/api/v1/webhooks/github",
        headers,
        unique,
        CONNECTIONS,
        BODY,
        warmup,
        secs,
    )
    .await;
    let loaded = started.elapsed();
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
    let mut measured = Measured {
        rps,
        other,
        errors,
        stored,
        wal_per_event: None,
        rows_per_sec: None,
        rows: Vec::new(),
    };
    if let (Some(db), Some((lsn, rows_before))) = (server.database(), before) {
        // Right after the load: the rules engine may still be marking the last instances
        // processed; their WAL is not counted.
        let now = db.wal_lsn().await;
        let wal = db.wal_bytes(&lsn, &now).await;
        let rows_after = db.rows().await;
        let count = |rows: &[(String, i64)]| rows.iter().map(|(_, n)| n).sum::<i64>();
        let written = count(&rows_after) - count(&rows_before);
        measured.wal_per_event = Some(wal / stored.max(1) as f64);
        measured.rows_per_sec = Some(written as f64 / loaded.as_secs_f64());
        measured.rows = rows_after
            .into_iter()
            .map(|(table, n)| {
                let before = rows_before
                    .iter()
                    .find(|(t, _)| *t == table)
                    .map_or(0, |(_, b)| *b);
                (table, n - before)
            })
            .filter(|(_, n)| *n != 0)
            .collect();
    }
    server.finish().await;
    measured
}

/// The median of `values` (for an even count, the mean of the middle two).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

fn side_name(backend: &Backend, sender: Sender) -> String {
    match sender {
        Sender::ApiKey => backend.name().to_owned(),
        Sender::GitHub => format!("{}+github", backend.name()),
    }
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
    let backends = Backend::all();
    // Each backend with the API-key hook; SQLite also with the GitHub-signed hook (its cost:
    // the datastore read and decryption of the secret, the HMAC, the delivery id's row).
    let mut sides: Vec<(&Backend, Sender)> = backends.iter().map(|b| (b, Sender::ApiKey)).collect();
    if std::env::var("INGEST_SIGNED").map_or(true, |v| v != "0") {
        sides.insert(1, (&backends[0], Sender::GitHub));
    }

    // The raw side alone swings by a third between runs on a shared machine, so the sides
    // alternate, round after round (raw, then Stormhook on each backend), and each round gives
    // its own ratios; the median of the rounds is the result.
    let mut ratios = vec![Vec::new(); sides.len()];
    let mut rates = vec![Vec::new(); sides.len()];
    let mut raw_rates = Vec::new();
    for round in 1..=rounds {
        let (raw_rps, raw_other, raw_errors) = if only_stormhook {
            (f64::NAN, 0, 0)
        } else {
            on_fresh_runtime(raw(warmup, secs))
        };
        raw_rates.push(raw_rps);
        let mut line = format!(
            "ingest/round {round}: raw axum echo {raw_rps:>7.0} req/s (non-2xx {raw_other}, errors {raw_errors})"
        );
        for (i, (backend, sender)) in sides.iter().enumerate() {
            let m = on_fresh_runtime(stormhook(backend, *sender, warmup, secs));
            let ratio = m.rps / raw_rps;
            ratios[i].push(ratio);
            rates[i].push(m.rps);
            line.push_str(&format!(
                "; {} durable {:>7.0} req/s (non-2xx {}, errors {}, trigger instances stored {}) ratio {ratio:.2}",
                side_name(backend, *sender),
                m.rps,
                m.other,
                m.errors,
                m.stored,
            ));
            if let (Some(wal), Some(rows)) = (m.wal_per_event, m.rows_per_sec) {
                line.push_str(&format!(
                    " [WAL {wal:.0} B/event, {rows:.0} rows/s written: {:?}]",
                    m.rows
                ));
            }
        }
        println!("{line}");
    }
    println!(
        "ingest/raw axum echo, median of {rounds} rounds: {:.0} req/s",
        median(raw_rates)
    );
    for (i, (backend, sender)) in sides.iter().enumerate() {
        println!(
            "ingest/{:<15} median of {rounds} rounds: {:>7.0} req/s, ratio stormhook/raw {:.2}  (target >= 0.5)",
            side_name(backend, *sender),
            median(rates[i].clone()),
            median(ratios[i].clone()),
        );
    }
    println!(
        "{CONNECTIONS} connections, {} s measured after {} s warm-up per side and round, 2 tokio worker threads shared by the servers and the load generator",
        secs.as_secs(),
        warmup.as_secs()
    );
}
