//! Nothing accepted is lost: `stormhook serve` is killed with SIGKILL while clients post
//! webhooks; after a restart on the same data directory, every request that got a 202 is a
//! trigger instance.

mod common;

use std::collections::HashSet;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn start(data: &std::path::Path) -> (Child, String) {
    let (child, url, _stdout) = common::spawn_serve(data, &["--no-watch"]);
    (child, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_webhook_survives_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let out = common::stormhook()
        .args(["apikey", "create", "-k", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let (mut child, url) = start(data.path());

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
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for sender in senders {
        sender.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let (mut child, url) = start(data.path());
    let stored: Vec<serde_json::Value> = client
        .get(format!("{url}/api/v1/triggerinstances?limit=-1"))
        .header("St2-Api-Key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
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
