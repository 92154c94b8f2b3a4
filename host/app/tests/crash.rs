//! Nothing accepted is lost: `stormhook serve` is killed with SIGKILL while clients post
//! webhooks; after a restart on the same data directory, every request that got a 202 is a
//! trigger instance.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Serve;

fn start(data: &std::path::Path) -> Serve {
    common::spawn_serve(data, &["--no-watch"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_webhook_survives_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let key = common::offline_key(data.path());
    let mut server = start(data.path());
    let url = server.url.clone();

    let acked = Arc::new(Mutex::new(HashSet::new()));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut senders = Vec::new();
    for worker in 0..16u64 {
        let (client, url, key, acked) =
            (client.clone(), url.clone(), key.clone(), Arc::clone(&acked));
        senders.push(tokio::spawn(async move {
            for i in 0..10_000u64 {
                let n = worker * 100_000 + i;
                let sent = client
                    .post(format!("{url}/api/v1/webhooks/github"))
                    .header("St2-Api-Key", &key)
                    .json(&serde_json::json!({"n": n}))
                    .send()
                    .await;
                match sent {
                    Ok(resp) if resp.status() == 202 => {
                        acked.lock().unwrap().insert(n);
                    }
                    Ok(resp) => panic!("unexpected {} before the kill", resp.status()),
                    Err(_) => return, // The server is gone.
                }
            }
        }));
    }
    // Let a few hundred requests through, then kill without warning.
    while acked.lock().unwrap().len() < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    for sender in senders {
        sender.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let mut server = start(data.path());
    let url = server.url.clone();
    let stored: Vec<serde_json::Value> = client
        .get(format!("{url}/api/v1/triggerinstances?limit=-1"))
        .header("St2-Api-Key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let stored: HashSet<u64> = stored
        .iter()
        .filter_map(|t| t["payload"]["body"]["n"].as_u64())
        .collect();
    let lost: Vec<_> = acked.difference(&stored).collect();
    eprintln!(
        "{} acknowledged before SIGKILL, {} stored after restart",
        acked.len(),
        stored.len()
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged webhooks lost: {:?}",
        lost.len(),
        lost.iter().take(10).collect::<Vec<_>>()
    );
    assert!(stored.len() >= acked.len());
}

/// Executions survive SIGKILL too: every execution that got a 201 is still there after a
/// restart. Those that had not started run then; those that were running (a command that may
/// have had effects) become `abandoned`, with an error saying why, and are not run twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_survive_sigkill_and_running_ones_are_abandoned_not_rerun() {
    let data = tempfile::tempdir().unwrap();
    let key = common::offline_key(data.path());
    let marker = data.path().join("ran");
    let mut server = start(data.path());
    let url = server.url.clone();
    let client = reqwest::Client::new();
    // 16 run at once; the other 14 wait as `requested`. Each appends a line when it starts.
    let mut ids = Vec::new();
    for _ in 0..30 {
        let resp = client
            .post(format!("{url}/api/v1/executions"))
            .header("St2-Api-Key", &key)
            .json(&serde_json::json!({"action": "core.local", "parameters": {
                "cmd": format!("echo x >> {}; sleep 30", marker.display()),
            }}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let e: serde_json::Value = resp.json().await.unwrap();
        ids.push(e["id"].as_str().unwrap().to_owned());
    }
    let started = std::time::Instant::now();
    let status_of = |url: String, key: String| {
        let client = client.clone();
        move |id: String| {
            let (client, url, key) = (client.clone(), url.clone(), key.clone());
            async move { execution(&client, &url, &key, &id).await }
        }
    };
    let get = status_of(url.clone(), key.clone());
    loop {
        let mut running = 0;
        for id in &ids {
            if get(id.clone()).await["status"] == "running" {
                running += 1;
            }
        }
        if running == 16 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{running} running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    // The commands were in the server's process groups; they die with their sleep, not with
    // the server. Let the marker settle before the restart.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ran_before = std::fs::read_to_string(&marker).unwrap().lines().count();
    assert_eq!(ran_before, 16);

    let mut server = start(data.path());
    let url = server.url.clone();
    let get = status_of(url.clone(), key.clone());
    let mut abandoned = 0;
    let mut restarted = 0;
    for id in &ids {
        let e = get(id.clone()).await;
        match e["status"].as_str().unwrap() {
            "abandoned" => {
                abandoned += 1;
                assert!(
                    e["result"]["error"]
                        .as_str()
                        .unwrap()
                        .contains("not run again"),
                    "{e}"
                );
            }
            "requested" | "scheduled" | "running" => restarted += 1,
            other => panic!("unexpected status {other}: {e}"),
        }
    }
    assert_eq!(
        (abandoned, restarted),
        (16, 14),
        "none lost, none run twice"
    );
    // The 14 that had not started run now (and only they).
    let started = std::time::Instant::now();
    loop {
        let lines = std::fs::read_to_string(&marker).unwrap().lines().count();
        if lines == 30 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{lines} started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap().lines().count(),
        30
    );
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    // Leave no sleeping commands behind.
    let _ = std::process::Command::new("pkill")
        .args(["-f", &format!("{}; sleep 30", marker.display())])
        .status();
}

/// `GET /api/v1/executions/{id}` on the server at `url`: the execution.
async fn execution(client: &reqwest::Client, url: &str, key: &str, id: &str) -> serde_json::Value {
    client
        .get(format!("{url}/api/v1/executions/{id}"))
        .header("St2-Api-Key", key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[path = "../../storage/tests/common/tmpfs.rs"]
mod tmpfs;

/// The reproduction of a full disk, on the real binary: the data directory is a tmpfs
/// that fills under load and is freed a few seconds later. Meanwhile webhooks, executions and
/// datastore writes get 503 (never 500); afterwards they succeed again, everything accepted is
/// processed without a restart, and after a SIGKILL every acknowledged write is still there:
/// each webhook as a trigger instance, each execution `succeeded` (none left `running`, so none
/// `abandoned`), each key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_episode_loses_nothing_acknowledged_across_sigkill() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let Some(fs) = tmpfs::Tmpfs::mount("256m") else {
        return;
    };
    let data = fs.path().join("data");
    let key = common::offline_key(&data);
    let mut server = start(&data);
    let url = server.url.clone();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    #[derive(Default)]
    struct Acked {
        webhooks: HashSet<u64>,
        executions: Vec<String>,
        keys: Vec<String>,
        refused: u64,
        other: Vec<String>,
    }
    let acked = Arc::new(Mutex::new(Acked::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    for worker in 0..4u64 {
        let (client, url, key, acked, stop, counter) = (
            client.clone(),
            url.clone(),
            key.clone(),
            Arc::clone(&acked),
            Arc::clone(&stop),
            Arc::clone(&counter),
        );
        senders.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let request = match (worker, n % 8) {
                    (0, 0) => client
                        .post(format!("{url}/api/v1/executions"))
                        .json(&serde_json::json!({"action": "core.noop"})),
                    (1, 0) => client
                        .put(format!("{url}/api/v1/keys/k{n}"))
                        .json(&serde_json::json!({"name": format!("k{n}"), "value": "v"})),
                    _ => client
                        .post(format!("{url}/api/v1/webhooks/github"))
                        .json(&serde_json::json!({"n": n})),
                };
                let resp = request.header("St2-Api-Key", &key).send().await.unwrap();
                let status = resp.status().as_u16();
                let body: serde_json::Value = resp.json().await.unwrap_or_default();
                let mut acked = acked.lock().unwrap();
                match status {
                    202 => {
                        acked.webhooks.insert(n);
                    }
                    201 => acked
                        .executions
                        .push(body["id"].as_str().unwrap().to_owned()),
                    200 => acked.keys.push(format!("k{n}")),
                    503 => acked.refused += 1,
                    _ => acked.other.push(format!("{status} {body}")),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let filler = fs.fill();
    tokio::time::sleep(Duration::from_secs(5)).await;
    std::fs::remove_file(&filler).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.unwrap();
    }
    let acked = Arc::try_unwrap(acked).ok().unwrap().into_inner().unwrap();
    eprintln!(
        "acknowledged: {} webhooks, {} executions, {} keys; 503: {}",
        acked.webhooks.len(),
        acked.executions.len(),
        acked.keys.len(),
        acked.refused
    );
    assert!(
        acked.other.is_empty(),
        "{:?}",
        &acked.other[..acked.other.len().min(5)]
    );
    assert!(acked.refused > 0, "the disk never filled");
    // Processed without a restart: no execution is left unfinished.
    let get = |path: String| {
        let (client, key) = (client.clone(), key.clone());
        async move {
            client
                .get(path)
                .header("St2-Api-Key", key)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let started = std::time::Instant::now();
    loop {
        let unfinished = get(format!(
            "{url}/api/v1/executions?limit=-1&status=requested,scheduled,running"
        ))
        .await;
        if unfinished.as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "unfinished: {}",
            unfinished.as_array().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();

    let mut server = start(&data);
    let url = server.url.clone();
    let instances = get(format!(
        "{url}/api/v1/triggerinstances?limit=-1&trigger_type=core.st2.webhook"
    ))
    .await;
    let stored: HashSet<u64> = instances
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["payload"]["body"]["n"].as_u64())
        .collect();
    let lost: Vec<_> = acked.webhooks.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged webhooks lost: {lost:?}");
    for id in &acked.executions {
        let e = get(format!("{url}/api/v1/executions/{id}")).await;
        assert_eq!(e["status"], "succeeded", "{e}");
    }
    for name in &acked.keys {
        let k = get(format!("{url}/api/v1/keys/{name}")).await;
        assert_eq!(k["value"], "v", "{name}: {k}");
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

/// Delayed executions (StackStorm's `delay`) survive SIGKILL: after a restart on the same data
/// directory one still waits until it is due, then runs (once); one far from due stays
/// `delayed`, and a cancel settles it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_executions_survive_sigkill_and_run_when_due() {
    let data = tempfile::tempdir().unwrap();
    let key = common::offline_key(data.path());
    let marker = data.path().join("ran");
    let client = reqwest::Client::new();
    let server = start(data.path());
    let post = |url: String, body: serde_json::Value| {
        let (client, key) = (client.clone(), key.clone());
        async move {
            let resp = client
                .post(format!("{url}/api/v1/executions"))
                .header("St2-Api-Key", &key)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 201);
            resp.json::<serde_json::Value>().await.unwrap()
        }
    };
    let soon = post(
        server.url.clone(),
        serde_json::json!({"action": "core.local", "delay": 4000, "parameters": {
            "cmd": format!("echo x >> {}", marker.display()),
        }}),
    )
    .await;
    assert_eq!(soon["status"], "delayed", "{soon}");
    let far = post(
        server.url.clone(),
        serde_json::json!({"action": "core.noop", "delay": 10_000_000_000u64}),
    )
    .await;
    assert_eq!(far["status"], "delayed", "{far}");
    let log = server.stop(); // SIGKILL
    assert!(!marker.exists(), "ran before its delay passed: {log}");

    let server = start(data.path());
    let get = async |id: &str| execution(&client, &server.url, &key, id).await;
    let started = std::time::Instant::now();
    let done = loop {
        let e = get(soon["id"].as_str().unwrap()).await;
        if e["status"] == "succeeded" {
            break e;
        }
        assert!(
            ["delayed", "requested", "scheduled", "running"]
                .contains(&e["status"].as_str().unwrap()),
            "{e}"
        );
        assert!(started.elapsed() < Duration::from_secs(30), "{e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let at = |i: usize| {
        stormhook_storage::ids::parse_time(done["log"][i]["timestamp"].as_str().unwrap()).unwrap()
    };
    assert_eq!(done["log"][2]["status"], "scheduled", "{done}");
    assert!(
        (at(2) - at(0)).num_milliseconds() >= 4000,
        "scheduled before it was due: {done}"
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 1);
    let far_id = far["id"].as_str().unwrap();
    assert_eq!(get(far_id).await["status"], "delayed");
    let canceled: serde_json::Value = client
        .delete(format!("{}/api/v1/executions/{far_id}", server.url))
        .header("St2-Api-Key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(canceled["status"], "canceled", "{canceled}");
    server.stop();
}
