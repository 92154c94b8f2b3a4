//! A full disk under load, end to end: the data directory is a small tmpfs this test mounts,
//! fills while webhooks, executions and datastore writes keep coming, and frees a few seconds
//! later. While it is full, writes answer 503 with `Retry-After` (never 500); once space
//! returns they succeed again within seconds, every acknowledged webhook is evaluated and
//! every execution completes, without a restart, and a fresh connection to the database sees
//! every acknowledged write.
//!
//! Mounting needs root: see `host/storage/tests/common/tmpfs.rs` for how the test skips
//! (loudly) without it.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stormhook_storage::Store as _;
use stormhook_tests::{TestServer, eventually_every, webhook_rule};

#[path = "../../host/storage/tests/common/tmpfs.rs"]
mod tmpfs;

use tmpfs::Tmpfs;

#[derive(Default)]
struct Seen {
    webhooks: BTreeSet<u64>,
    executions: Vec<String>,
    keys: Vec<String>,
    unavailable: u64,
    unavailable_without_retry_after: u64,
    other: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_loses_nothing_and_recovers_without_a_restart() {
    if std::env::var_os("DISK_FULL_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .try_init();
    }
    let Some(fs) = Tmpfs::mount("128m") else {
        return;
    };
    let server = TestServer::builder()
        .rules([webhook_rule("full", "full")])
        .data_dir_in(fs.path())
        .start()
        .await;
    let server = Arc::new(server);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let freed_at = Arc::new(Mutex::new(None::<Instant>));
    let acked_after_free = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for worker in 0..4 {
        let (server, seen, stop, counter) = (
            Arc::clone(&server),
            Arc::clone(&seen),
            Arc::clone(&stop),
            Arc::clone(&counter),
        );
        let (freed_at, acked_after_free) = (Arc::clone(&freed_at), Arc::clone(&acked_after_free));
        workers.push(tokio::spawn(async move {
            let client = server.client();
            while !stop.load(Ordering::Relaxed) {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let (kind, resp) = match (worker, n % 10) {
                    (0, 0) => (
                        "execution",
                        client
                            .post(server.url("/api/v1/executions"))
                            .json(&json!({"action": "core.noop"}))
                            .send()
                            .await,
                    ),
                    (1, 0) => (
                        "key",
                        client
                            .put(server.url(&format!("/api/v1/keys/k{n}")))
                            .json(&json!({"name": format!("k{n}"), "value": "v"}))
                            .send()
                            .await,
                    ),
                    _ => (
                        "webhook",
                        client
                            .post(server.url("/api/v1/webhooks/full"))
                            .json(&json!({"n": n, "pad": "p".repeat(512)}))
                            .send()
                            .await,
                    ),
                };
                let resp = resp.unwrap();
                let status = resp.status().as_u16();
                let retry_after = resp.headers().contains_key("retry-after");
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                {
                    let mut seen = seen.lock().unwrap();
                    match (kind, status) {
                        ("webhook", 202) => {
                            seen.webhooks.insert(n);
                            if freed_at.lock().unwrap().is_some() {
                                acked_after_free.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        ("execution", 201) => seen
                            .executions
                            .push(body["id"].as_str().unwrap().to_owned()),
                        ("key", 200) => seen.keys.push(format!("k{n}")),
                        (_, 503) => {
                            seen.unavailable += 1;
                            if !retry_after {
                                seen.unavailable_without_retry_after += 1;
                            }
                            let fault = body["faultstring"].as_str().unwrap_or_default();
                            assert!(fault.contains("retry later"), "{body}");
                        }
                        _ => seen.other.push(format!("{kind} {status} {body}")),
                    }
                }
                if status == 503 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let filler = fs.fill();
    tokio::time::sleep(Duration::from_secs(5)).await;
    std::fs::remove_file(&filler).unwrap();
    *freed_at.lock().unwrap() = Some(Instant::now());
    eventually_every(
        Duration::from_millis(100),
        Duration::from_secs(15),
        "20 webhooks to be accepted again after space returned",
        async || {
            let accepted = acked_after_free.load(Ordering::Relaxed);
            if accepted < 20 {
                return Err(format!("{accepted} accepted since"));
            }
            Ok(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let seen = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();
    eprintln!(
        "acknowledged: {} webhooks, {} executions, {} keys; 503: {}",
        seen.webhooks.len(),
        seen.executions.len(),
        seen.keys.len(),
        seen.unavailable
    );
    assert!(
        seen.other.is_empty(),
        "unexpected answers: {:?}",
        &seen.other[..seen.other.len().min(5)]
    );
    assert!(seen.unavailable > 0, "the disk never filled");
    assert_eq!(seen.unavailable_without_retry_after, 0);

    // Without a restart: every acknowledged webhook is evaluated, every execution completes.
    eventually_every(
        Duration::from_millis(200),
        Duration::from_secs(30),
        "every instance evaluated and every execution completed",
        async || {
            // (The API ignores `status` on trigger instances, as StackStorm does.)
            let pending = server
                .store
                .list_trigger_instances(&stormhook_storage::TriggerInstanceQuery {
                    status: Some("pending".into()),
                    limit: Some(1),
                    ..Default::default()
                })
                .await
                .unwrap()
                .total;
            let unfinished = server
                .get_json("/api/v1/executions?limit=-1&status=requested,scheduled,running")
                .await;
            let unfinished = unfinished.as_array().unwrap().len();
            if pending == 0 && unfinished == 0 {
                return Ok(());
            }
            Err(format!(
                "still pending: {pending} instances, {unfinished} executions"
            ))
        },
    )
    .await;

    // A fresh connection to the file sees every acknowledged write.
    let db = server.dir.path().join("stormhook.db");
    let fresh = stormhook_storage::sqlite::SqliteStore::open(&db)
        .await
        .unwrap();
    let instances = fresh
        .list_trigger_instances(&stormhook_storage::TriggerInstanceQuery {
            trigger_type: Some("core.st2.webhook".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let stored: BTreeSet<u64> = instances
        .items
        .iter()
        .filter_map(|t| t.payload["body"]["n"].as_u64())
        .collect();
    let lost: Vec<_> = seen.webhooks.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged webhooks lost: {lost:?}");
    assert!(instances.items.iter().all(|t| t.status == "processed"));
    let enforced = fresh
        .list_rule_enforcements(&stormhook_storage::EnforcementQuery::default())
        .await
        .unwrap();
    assert_eq!(enforced.total as usize, instances.items.len());
    for id in &seen.executions {
        let e = fresh
            .execution(id)
            .await
            .unwrap()
            .expect("an acknowledged execution");
        assert_eq!(e.status, "succeeded", "{id}");
    }
    for key in &seen.keys {
        assert_eq!(
            fresh.kv_get(key).await.unwrap().map(|p| p.value).as_deref(),
            Some("v"),
            "{key}"
        );
    }
}

/// A locked store is "cannot commit" too: while another connection holds the write lock past
/// the busy timeout (5 s), a webhook gets 503 with `Retry-After` and nothing is stored; once
/// the lock is released, the same webhook is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_store_answers_503_and_recovers() {
    let server = TestServer::builder()
        .rules([webhook_rule("locked", "locked")])
        .start()
        .await;
    let db = rusqlite::Connection::open(server.dir.path().join("stormhook.db")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    let post = || {
        server
            .client()
            .post(server.url("/api/v1/webhooks/locked"))
            .json(&json!({"n": 1}))
            .send()
    };
    let resp = post().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["faultstring"]
            .as_str()
            .unwrap()
            .contains("database is locked"),
        "{body}"
    );
    tokio::task::spawn_blocking(move || db.execute_batch("COMMIT"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(post().await.unwrap().status(), 202);
    let stored = server
        .get_json("/api/v1/triggerinstances?trigger_type=core.st2.webhook")
        .await;
    assert_eq!(stored.as_array().unwrap().len(), 1, "{stored}");
}
