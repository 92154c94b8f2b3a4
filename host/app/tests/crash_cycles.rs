//! Nothing acknowledged is lost or done twice across many crashes, on both stores: one rule on a
//! webhook (`core.noop`), 12 clients posting numbered webhooks without pause, and the server
//! killed with SIGKILL and restarted on the same store again and again (12 cycles), each kill
//! after a different number of acknowledgements (so it lands while requests are committed,
//! instances evaluated and executions run). After the last kill a clean start drains the
//! backlog; then every acknowledged webhook is a processed trigger instance with exactly one
//! enforcement and one execution.
//!
//! SQLite in a temporary data directory; PostgreSQL on a fresh schema of
//! `STORMHOOK_TEST_DATABASE_URL` (skipped, saying so, without it). `crash.rs` has the single
//! kill tests.

mod common;
#[path = "common/e2e.rs"]
mod e2e;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use e2e::{Api, Audit};
use serde_json::json;

#[path = "common/pg.rs"]
mod pg;

/// The two tests run one after the other: each measures itself on a 2-core machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CYCLES: usize = 12;
const SENDERS: u64 = 12;
const HOOK: &str = "crash-cycles";
const RULE: &str = "e2e.crash_cycles";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_loses_nothing_acknowledged_and_enforces_once_across_sigkill_cycles() {
    let _serial = SERIAL.lock().await;
    cycles("SQLite", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_loses_nothing_acknowledged_and_enforces_once_across_sigkill_cycles() {
    let _serial = SERIAL.lock().await;
    let Some(url) = pg::fresh_schema_url("crash_cycles postgres").await else {
        return;
    };
    cycles("PostgreSQL", Some(url)).await;
}

async fn cycles(backend: &str, database_url: Option<String>) {
    let began = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let packs = e2e::empty_packs(root.path(), "packs");
    let key = e2e::offline_key(&data, database_url.as_deref());
    let mut extra = vec![
        "--no-watch".to_owned(),
        "--packs".to_owned(),
        packs.display().to_string(),
    ];
    if let Some(url) = &database_url {
        // Each restart is a new node (a new default node id); the dead one's claims are
        // taken over after its lease, kept short so the drain does not wait 15 s.
        extra.extend([
            "--database-url".into(),
            url.clone(),
            "--lease-secs".into(),
            "2".into(),
        ]);
    }
    let api = Api::new(&key);
    let server = e2e::start(&data, &extra).await;
    e2e::create_rule(
        &api,
        &server.url,
        &e2e::webhook_rule("crash_cycles", HOOK, "core.noop", json!({})),
    )
    .await;

    // The clients post to whichever server is up (none between a kill and the next start).
    let target: Arc<RwLock<Option<String>>> = Arc::new(RwLock::new(None));
    let acked = Arc::new(Mutex::new(HashSet::<u64>::new()));
    let refused = Arc::new(Mutex::new(BTreeMap::<u16, usize>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        let (client, key, target, acked, refused, stop, counter) = (
            client.clone(),
            key.clone(),
            Arc::clone(&target),
            Arc::clone(&acked),
            Arc::clone(&refused),
            Arc::clone(&stop),
            Arc::clone(&counter),
        );
        senders.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Some(url) = target.read().unwrap().clone() else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let sent = client
                    .post(format!("{url}/api/v1/webhooks/{HOOK}"))
                    .header("St2-Api-Key", &key)
                    .json(&json!({"n": n}))
                    .send()
                    .await;
                match sent.map(|r| r.status().as_u16()) {
                    Ok(202) => {
                        acked.lock().unwrap().insert(n);
                    }
                    Ok(status) => *refused.lock().unwrap().entry(status).or_default() += 1,
                    // Killed while the request was in flight, or not up yet.
                    Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
                }
            }
        }));
    }

    let mut old_logs: Vec<(String, String)> = Vec::new();
    let mut first = Some(server);
    for cycle in 0..CYCLES {
        let mut server = match first.take() {
            Some(server) => server,
            None => e2e::start(&data, &extra).await,
        };
        *target.write().unwrap() = Some(server.url.clone());
        let before = acked.lock().unwrap().len();
        // 120..=270 acknowledgements, a different number each cycle.
        let want = 120 + (cycle * 53) % 151;
        let acked_now = Arc::clone(&acked);
        e2e::wait_for(
            Duration::from_secs(30),
            Duration::from_millis(2),
            &format!("{backend} cycle {cycle}: {want} more webhooks acknowledged"),
            || e2e::logs_of([(format!("server of cycle {cycle}").as_str(), server.log())]),
            || {
                let got = acked_now.lock().unwrap().len() - before;
                async move {
                    if got >= want {
                        Ok(())
                    } else {
                        Err(format!("{got} acknowledged"))
                    }
                }
            },
        )
        .await;
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        *target.write().unwrap() = None;
        old_logs.push((format!("cycle {cycle}"), server.stop()));
    }
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let refused = refused.lock().unwrap().clone();

    // A clean start drains what the kills left.
    let server = e2e::start(&data, &extra).await;
    let logs = || {
        let mut named: Vec<(&str, String)> = old_logs
            .iter()
            .rev()
            .take(2)
            .map(|(name, log)| (name.as_str(), log.clone()))
            .collect();
        named.push(("the final server", server.log()));
        e2e::logs_of(named)
    };
    let (_, drain) = e2e::wait_for(
        Duration::from_secs(60),
        Duration::from_millis(200),
        &format!("{backend}: the backlog drains after the last restart"),
        logs,
        || e2e::drained(&api, &server.url),
    )
    .await;
    let snap = e2e::snapshot(&api, &server.url)
        .await
        .unwrap_or_else(|e| panic!("{e}{}", logs()));
    let audit = Audit::of(&acked, &[RULE], &snap);
    eprintln!(
        "crash cycles on {backend}: {CYCLES} SIGKILL cycles, {SENDERS} senders; \
         acked {}, lost {}, unprocessed {}, duplicate {}, acked without enforcement {}; \
         drained {:.1} s after the clean start; non-202 answers {refused:?}; took {:.1} s",
        audit.acked,
        audit.lost.len(),
        audit.unprocessed.values().sum::<usize>(),
        audit.duplicate.len(),
        audit.missing.len(),
        drain.as_secs_f64(),
        began.elapsed().as_secs_f64(),
    );
    eprintln!("crash cycles on {backend}: {}", audit.summary());
    audit.assert_exact(&logs());
    // Under load a server may shed (503) or cap a client (429); it never fails otherwise.
    assert!(
        refused.keys().all(|s| matches!(s, 429 | 503)),
        "{backend}: unexpected answers to webhooks: {refused:?}{}",
        logs()
    );
    drop(server);
}
