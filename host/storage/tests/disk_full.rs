//! A full disk, on a real filesystem: the data directory is a small tmpfs this test mounts and
//! fills. While it is full every write fails as `unavailable` (nothing half-written); once space
//! returns, writes succeed again within seconds, and what they committed is still there when the
//! database is opened afresh.
//!
//! Mounting needs root: see `common/tmpfs.rs` for how the test skips (loudly) without it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use stormhook_storage::sqlite::SqliteStore;
use stormhook_storage::{
    Execution, FinishedInstance, NewEvent, Store, Trace, TriggerInstance, TriggerInstanceQuery, ids,
};

#[path = "common/tmpfs.rs"]
mod tmpfs;

use tmpfs::Tmpfs;

fn event(n: u64, payload_bytes: usize) -> NewEvent {
    let now = ids::now();
    let trace = Trace {
        id: ids::object_id(),
        trace_tag: format!("tag-{n}"),
        start_timestamp: now.clone(),
        trigger_instances: vec![],
    };
    let instance = TriggerInstance {
        id: ids::object_id(),
        trigger: "core.t".into(),
        trigger_type: Some("core.st2.webhook".into()),
        payload: json!({"n": n, "pad": "x".repeat(payload_bytes)}),
        occurrence_time: now,
        status: stormhook_storage::InstanceStatus::Pending,
        trace_id: Some(trace.id.clone()),
        depth: 0,
    };
    NewEvent::new(trace, vec![instance])
}

fn execution(pad: usize) -> Execution {
    Execution {
        id: ids::object_id(),
        action_ref: "core.noop".into(),
        runner: "noop".into(),
        status: stormhook_storage::ExecutionStatus::Running,
        start_timestamp: ids::now(),
        end_timestamp: None,
        user: Some("stanley".into()),
        rule_ref: None,
        trigger_instance_id: None,
        due_at: None,
        run_parameters: json!({}),
        document: json!({"status": "running", "pad": "y".repeat(pad)}),
    }
}

/// Tries `write` until it succeeds or `within` passes; panics with the last error.
async fn eventually<F, Fut, T>(what: &str, within: Duration, mut write: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = stormhook_storage::Result<T>>,
{
    let start = Instant::now();
    loop {
        match write().await {
            Ok(value) => return value,
            Err(e) if start.elapsed() < within => {
                eprintln!("{what}: still failing: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{what} still fails {within:?} after space returned: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_cleanly_and_they_recover_when_space_returns() {
    let Some(fs) = Tmpfs::mount("24m") else {
        return;
    };
    let db = fs.path().join("stormhook.db");
    let store = Arc::new(SqliteStore::open(&db).await.unwrap());
    let instance_id = {
        let first = event(0, 10);
        let id = first.instances[0].id.clone();
        store.commit_events(&[first]).await.unwrap();
        id
    };
    let mut running = execution(10);
    store.insert_execution(&running, None).await.unwrap();
    let small_target = execution(10);
    store.insert_execution(&small_target, None).await.unwrap();

    let filler = fs.fill();

    // Every kind of write fails while the disk is full, each one as "unavailable", and each
    // one many times, so that every pooled connection meets the failure inside a transaction.
    for round in 0..12 {
        let big = 2 << 20;
        let err = store
            .commit_events(&[event(100 + round, big)])
            .await
            .unwrap_err();
        assert!(err.is_unavailable(), "commit_events: {err}");
        let mut done = running.clone();
        done.status = stormhook_storage::ExecutionStatus::Succeeded;
        done.document = json!({"status": "succeeded", "pad": "z".repeat(big)});
        let err = store
            .update_executions(&[done], &[stormhook_storage::ExecutionStatus::Running])
            .await
            .unwrap_err();
        assert!(err.is_unavailable(), "update_executions: {err}");
        let err = store
            .finish_trigger_instances(&[FinishedInstance {
                id: instance_id.clone(),
                status: stormhook_storage::InstanceStatus::Processed,
                enforcements: vec![],
                executions: vec![execution(big)],
            }])
            .await
            .unwrap_err();
        assert!(err.is_unavailable(), "finish_trigger_instances: {err}");
        let err = store.kv_set("big", &"k".repeat(big)).await.unwrap_err();
        assert!(err.is_unavailable(), "kv_set: {err}");
        // Small transactions stay in SQLite's page cache until COMMIT, which is where the
        // full disk stops them; there SQLite rolls the whole transaction back by itself (the
        // case that left sqlx counting a transaction that no longer existed).
        // (They may also succeed: the frames a failed transaction wrote into the WAL before
        // the disk refused more leave room for small ones.)
        for small in [100, 20_000] {
            let mut done = small_target.clone();
            done.document = json!({"status": "running", "pad": "s".repeat(small)});
            if let Err(err) = store.update_executions(&[done], &[]).await {
                assert!(err.is_unavailable(), "small update_executions: {err}");
            }
            let finished = FinishedInstance {
                id: instance_id.clone(),
                status: stormhook_storage::InstanceStatus::Processed,
                enforcements: vec![],
                executions: vec![execution(small)],
            };
            if let Err(err) = store.finish_trigger_instances(&[finished]).await {
                assert!(
                    err.is_unavailable(),
                    "small finish_trigger_instances: {err}"
                );
            }
        }
    }

    std::fs::remove_file(&filler).unwrap();

    // Space is back: every write succeeds again within seconds, through every connection.
    let within = Duration::from_secs(10);
    running.status = stormhook_storage::ExecutionStatus::Succeeded;
    running.document = json!({"status": "succeeded"});
    let moved = eventually("update_executions", within, || {
        store.update_executions(
            std::slice::from_ref(&running),
            &[stormhook_storage::ExecutionStatus::Running],
        )
    })
    .await;
    assert_eq!(moved, [true]);
    let later = execution(10);
    let finished = [FinishedInstance {
        id: instance_id.clone(),
        status: stormhook_storage::InstanceStatus::Processed,
        enforcements: vec![],
        executions: vec![later.clone()],
    }];
    eventually("finish_trigger_instances", within, || {
        store.finish_trigger_instances(&finished)
    })
    .await;
    for i in 0..8 {
        let name = format!("k{i}");
        eventually("kv_set", within, || store.kv_set(&name, "v")).await;
        let e = execution(10);
        eventually("insert_execution", within, || {
            store.insert_execution(&e, None)
        })
        .await;
    }
    let after = event(1, 10);
    eventually("commit_events", within, || {
        store.commit_events(std::slice::from_ref(&after))
    })
    .await;

    // What was committed is committed: a fresh connection to the file sees all of it.
    drop(store);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reopened = SqliteStore::open(&db).await.unwrap();
    let stored = reopened.execution(&running.id).await.unwrap().unwrap();
    assert_eq!(stored.status, "succeeded");
    assert!(reopened.execution(&later.id).await.unwrap().is_some());
    for i in 0..8 {
        assert_eq!(
            reopened
                .kv_get(&format!("k{i}"))
                .await
                .unwrap()
                .map(|pair| pair.value)
                .as_deref(),
            Some("v"),
            "k{i}"
        );
    }
    let instance = reopened
        .trigger_instance(&instance_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(instance.status, "processed");
    let all = reopened
        .list_trigger_instances(&TriggerInstanceQuery::default())
        .await
        .unwrap();
    assert_eq!(
        all.total, 2,
        "the two small events, none of the failed big ones"
    );
    assert!(reopened.kv_get("big").await.unwrap().is_none());
}
