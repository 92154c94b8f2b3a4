//! The store's behaviour as the server relies on it, written once against the `Store` trait
//! and run on SQLite and on PostgreSQL (see `common/backends.rs`). Where a shared store
//! promises something else (it claims where SQLite reads), the story branches on
//! `Store::cluster` and checks each backend's own promise.

use std::sync::Arc;

use serde_json::json;
use stormhook_storage::ingest::Ingest;
use stormhook_storage::sqlite::SqliteStore;
use stormhook_storage::{
    ApiKey, Committed, DeliveryKey, Execution, ExecutionQuery, ExecutionStatus, FieldFilter,
    FinishedInstance, NewEvent, Retained, RuleEnforcement, StorageError, Store, StoredTrigger,
    Trace, TraceQuery, TriggerInstance, TriggerInstanceQuery, TriggerType, Unreadable, ids,
};

#[macro_use]
#[path = "common/backends.rs"]
mod backends;

use backends::{Backend, Kind};

fn event(trigger: &str, n: u64, time: &str) -> NewEvent {
    let trace = Trace {
        id: ids::object_id(),
        trace_tag: format!("tag-{n}"),
        start_timestamp: time.into(),
        trigger_instances: vec![],
    };
    let instance = TriggerInstance {
        id: ids::object_id(),
        trigger: trigger.into(),
        trigger_type: Some("core.st2.webhook".into()),
        payload: json!({"n": n}),
        occurrence_time: time.into(),
        status: stormhook_storage::InstanceStatus::Pending,
        trace_id: Some(trace.id.clone()),
        depth: 0,
    };
    NewEvent::new(trace, vec![instance])
}

/// The ids of a queue of trigger instances, all readable.
fn queue_ids(queue: &[(i64, Result<TriggerInstance, Unreadable>)]) -> Vec<String> {
    queue
        .iter()
        .map(|(_, t)| t.as_ref().unwrap().id.clone())
        .collect()
}

on_both_backends!(
    story,
    pending_reports_an_unreadable_instance_in_its_place,
    evaluating_an_instance_twice_requests_its_action_once,
    purge_deletes_old_finished_records_in_batches,
    an_execution_document_comes_back_whole_after_its_moves,
    executions_filter_on_document_fields_and_inclusive_time_ranges,
    a_claim_takes_only_the_runners_asked_for,
    delayed_executions_are_promoted_once_when_due,
    a_failing_write_fails_alone_among_concurrent_writes,
    a_delivery_id_is_stored_once_within_its_window,
    traces_filter_on_their_executions_and_rules,
    an_event_joins_a_stored_trace,
);

async fn story(backend: &Backend) {
    let store = Arc::clone(&backend.store);
    // Events: committed together, listed newest first, filtered, paged.
    let events: Vec<NewEvent> = (0..5)
        .map(|n| {
            event(
                if n % 2 == 0 { "core.a" } else { "core.b" },
                n,
                &format!("2026-11-29T10:00:0{n}.000000Z"),
            )
        })
        .collect();
    store.commit_events(&events).await.unwrap();
    let all = store
        .list_trigger_instances(&TriggerInstanceQuery::default())
        .await
        .unwrap();
    assert_eq!(all.total, 5);
    assert_eq!(
        all.items
            .iter()
            .map(|t| t.payload["n"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [4, 3, 2, 1, 0]
    );
    let page = store
        .list_trigger_instances(&TriggerInstanceQuery {
            triggers: vec!["core.a".into()],
            limit: Some(2),
            offset: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((page.total, page.items.len()), (3, 2));
    assert_eq!(page.items[0].payload["n"], 2);
    let later = store
        .list_trigger_instances(&TriggerInstanceQuery {
            timestamp_gt: Some("2026-11-29T10:00:02.000000Z".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(later.total, 2);

    // A batch is atomic: a duplicate id fails the whole batch.
    let dup = event("core.a", 9, "2026-11-29T11:00:00.000000Z");
    let mut clash = event("core.a", 10, "2026-11-29T11:00:00.000000Z");
    clash.instances[0].id = events[0].instances[0].id.clone();
    assert!(store.commit_events(&[dup, clash]).await.is_err());
    assert_eq!(
        store
            .list_trigger_instances(&TriggerInstanceQuery::default())
            .await
            .unwrap()
            .total,
        5
    );

    // Status moves; traces find their instances.
    let first = &events[0].instances[0];
    assert!(
        store
            .set_trigger_instance_status(&first.id, stormhook_storage::InstanceStatus::Processed)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .trigger_instance(&first.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        "processed"
    );
    let trace = store.trace(&events[0].trace.id).await.unwrap().unwrap();
    assert_eq!(trace.trigger_instances[0].0, first.id);

    // API keys: unique hash, creation order, update, delete.
    let key = |hash: &str| ApiKey {
        id: ids::object_id(),
        user: "u".into(),
        key_hash: hash.into(),
        metadata: json!({}),
        created_at: ids::now(),
        enabled: true,
    };
    let (k1, k2) = (key("h1"), key("h2"));
    store.insert_api_key(&k1).await.unwrap();
    store.insert_api_key(&k2).await.unwrap();
    assert!(matches!(
        store.insert_api_key(&key("h1")).await,
        Err(StorageError::Conflict { .. })
    ));
    let listed = store.list_api_keys(None, 0).await.unwrap();
    assert_eq!(
        listed
            .items
            .iter()
            .map(|k| k.key_hash.as_str())
            .collect::<Vec<_>>(),
        ["h1", "h2"]
    );
    assert!(
        store
            .update_api_key(&ApiKey {
                enabled: false,
                ..k1.clone()
            })
            .await
            .unwrap()
    );
    assert!(!store.api_key_by_hash("h1").await.unwrap().unwrap().enabled);
    assert!(store.delete_api_key(&k1.id).await.unwrap());
    assert!(!store.delete_api_key(&k1.id).await.unwrap());

    // Trigger types: conflict carries the existing id.
    let t = TriggerType {
        id: ids::object_id(),
        reference: "p.t".into(),
        pack: "p".into(),
        name: "t".into(),
        description: None,
        payload_schema: json!({}),
        parameters_schema: json!({}),
        tags: json!([]),
    };
    store.insert_trigger_type(&t).await.unwrap();
    match store
        .insert_trigger_type(&TriggerType {
            id: ids::object_id(),
            ..t.clone()
        })
        .await
    {
        Err(StorageError::Conflict { existing_id, .. }) => {
            assert_eq!(existing_id.as_deref(), Some(t.id.as_str()))
        }
        other => panic!("expected a conflict, got {other:?}"),
    }

    // Triggers created through the API: unique by ref, found by ref or id, updated and
    // deleted by id (both backends alike).
    let trigger = StoredTrigger {
        id: ids::object_id(),
        reference: "p.st2.trigger one".into(),
        pack: "p".into(),
        name: "st2.trigger one".into(),
        trigger_type: "p.t".into(),
        parameters: json!({"param1": {"foo": "bar"}}),
        description: Some("d".into()),
    };
    store.insert_trigger(&trigger).await.unwrap();
    match store
        .insert_trigger(&StoredTrigger {
            id: ids::object_id(),
            ..trigger.clone()
        })
        .await
    {
        Err(StorageError::Conflict { existing_id, .. }) => {
            assert_eq!(existing_id.as_deref(), Some(trigger.id.as_str()))
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        store.trigger("p.st2.trigger one").await.unwrap().as_ref(),
        Some(&trigger)
    );
    assert_eq!(
        store.trigger(&trigger.id).await.unwrap().as_ref(),
        Some(&trigger)
    );
    let updated = StoredTrigger {
        description: None,
        parameters: json!({}),
        ..trigger.clone()
    };
    assert!(store.update_trigger(&updated).await.unwrap());
    assert_eq!(store.list_triggers().await.unwrap(), vec![updated.clone()]);
    assert!(store.delete_trigger(&trigger.id).await.unwrap());
    assert!(!store.delete_trigger(&trigger.id).await.unwrap());
    assert!(store.list_triggers().await.unwrap().is_empty());

    // The rules engine's queue: pending instances in insertion order, each with its number.
    // One node (SQLite) reads from a number on, and reading writes nothing; a shared store
    // (PostgreSQL) claims, so what one call took the next does not return.
    let all = if store.cluster().is_none() {
        let all = store.pending_after(0, 100).await.unwrap();
        assert!(all.len() >= 4, "{all:?}");
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "numbered in order");
        let first = store.pending_after(0, 3).await.unwrap();
        assert_eq!(first, all[..3]);
        let rest = store.pending_after(first[2].0, 100).await.unwrap();
        assert_eq!(rest, all[3..]);
        // Nothing is pending after the last one; reading wrote nothing.
        assert!(
            store
                .pending_after(all.last().unwrap().0, 100)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.pending_after(0, 100).await.unwrap(), all);
        all
    } else {
        let first = store.pending_after(0, 3).await.unwrap();
        let rest = store.pending_after(0, 100).await.unwrap();
        let all: Vec<_> = first.iter().chain(&rest).cloned().collect();
        assert_eq!((first.len(), all.len()), (3, 4), "{all:?}");
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "numbered in order");
        assert!(
            all.iter()
                .all(|(_, t)| t.as_ref().unwrap().status == "processing"),
            "claimed"
        );
        // Everything is claimed under a live lease: nothing more to take.
        assert!(store.pending_after(0, 100).await.unwrap().is_empty());
        all
    };
    let all_ids = queue_ids(&all);
    // The same instances in the same order on both: the four not yet processed.
    assert_eq!(
        all_ids,
        events[1..]
            .iter()
            .map(|e| e.instances[0].id.clone())
            .collect::<Vec<_>>()
    );
    let claimed: Vec<_> = all
        .iter()
        .take(1)
        .map(|(_, t)| t.clone().unwrap())
        .collect();
    let enforcement = stormhook_storage::RuleEnforcement {
        id: ids::object_id(),
        trigger_instance_id: claimed[0].id.clone(),
        execution_id: None,
        failure_reason: None,
        rule_ref: "p.r".into(),
        rule_id: "r1".into(),
        rule_uid: "rule:p:r".into(),
        enforced_at: ids::now(),
        status: stormhook_storage::EnforcementStatus::Succeeded,
    };
    let execution = stormhook_storage::Execution {
        id: ids::object_id(),
        action_ref: "core.noop".into(),
        runner: "noop".into(),
        status: stormhook_storage::ExecutionStatus::Requested,
        start_timestamp: ids::now(),
        end_timestamp: None,
        user: Some("stanley".into()),
        rule_ref: Some("p.r".into()),
        trigger_instance_id: Some(claimed[0].id.clone()),
        due_at: None,
        run_parameters: serde_json::json!({}),
        document: serde_json::json!({"status": "requested"}),
    };
    store
        .finish_trigger_instances(&[stormhook_storage::FinishedInstance {
            id: claimed[0].id.clone(),
            status: stormhook_storage::InstanceStatus::Processed,
            enforcements: vec![enforcement.clone()],
            executions: vec![execution.clone()],
        }])
        .await
        .unwrap();
    // The execution was stored with the enforcement; a status move is claimed once.
    assert_eq!(
        store.execution(&execution.id).await.unwrap(),
        Some(execution.clone())
    );
    let mut scheduled = execution.clone();
    scheduled.status = stormhook_storage::ExecutionStatus::Scheduled;
    assert!(
        store
            .update_execution(&scheduled, &[stormhook_storage::ExecutionStatus::Requested])
            .await
            .unwrap()
    );
    assert!(
        !store
            .update_execution(&scheduled, &[stormhook_storage::ExecutionStatus::Requested])
            .await
            .unwrap()
    );
    let by_rule = store
        .list_executions(&stormhook_storage::ExecutionQuery {
            rule: Some("p.r".into()),
            statuses: vec!["scheduled".into(), "running".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_rule.total, 1);
    assert_eq!(by_rule.items[0].status, "scheduled");
    let none = store
        .list_executions(&stormhook_storage::ExecutionQuery {
            statuses: vec!["requested".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(none.total, 0);
    assert_eq!(
        store
            .trigger_instance(&claimed[0].id)
            .await
            .unwrap()
            .unwrap()
            .status,
        "processed"
    );
    if store.cluster().is_none() {
        // A finished instance is no longer pending; the others still are.
        assert_eq!(store.pending_after(0, 100).await.unwrap(), all[1..]);
        // An instance left in `processing` (by an earlier version) is pending again after
        // requeue.
        assert!(
            store
                .set_trigger_instance_status(
                    &all_ids[1],
                    stormhook_storage::InstanceStatus::Processing
                )
                .await
                .unwrap()
        );
        assert_eq!(store.pending_after(0, 100).await.unwrap(), all[2..]);
        assert_eq!(store.requeue_processing().await.unwrap(), 1);
        assert_eq!(store.pending_after(0, 100).await.unwrap(), all[1..]);
    } else {
        // The others are still claimed. One set to `processing` from outside the claim is
        // nobody's, so it is claimed again at once; requeueing moves nothing.
        assert!(store.pending_after(0, 100).await.unwrap().is_empty());
        assert!(
            store
                .set_trigger_instance_status(
                    &all_ids[1],
                    stormhook_storage::InstanceStatus::Processing
                )
                .await
                .unwrap()
        );
        assert_eq!(store.requeue_processing().await.unwrap(), 0);
        assert_eq!(
            queue_ids(&store.pending_after(0, 100).await.unwrap()),
            all_ids[1..2]
        );
        assert!(store.pending_after(0, 100).await.unwrap().is_empty());
    }
    assert_eq!(
        store.rule_enforcement(&enforcement.id).await.unwrap(),
        Some(enforcement.clone())
    );
    let by_rule = store
        .list_rule_enforcements(&stormhook_storage::EnforcementQuery {
            rule_ref: Some("p.r".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_rule.total, 1);

    // The datastore.
    store.kv_set("a.b", "1").await.unwrap();
    store.kv_set("a.b", "2").await.unwrap();
    assert_eq!(
        store
            .kv_get("a.b")
            .await
            .unwrap()
            .map(|pair| pair.value)
            .as_deref(),
        Some("2")
    );
    assert_eq!(
        store.kv_all().await.unwrap(),
        [("a.b".to_owned(), "2".to_owned())]
    );
    assert!(store.kv_delete("a.b").await.unwrap());
    assert_eq!(store.kv_get("a.b").await.unwrap(), None);

    // Group commit: many concurrent submissions, every one stored.
    let ingest = Ingest::start(Arc::clone(&store), 1024);
    let mut tasks = Vec::new();
    for n in 0..200 {
        let ingest = ingest.clone();
        tasks.push(tokio::spawn(async move {
            ingest
                .submit(event("core.c", 1000 + n, "2026-11-29T12:00:00.000000Z"))
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let c = store
        .list_trigger_instances(&TriggerInstanceQuery {
            triggers: vec!["core.c".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(c.total, 200);

    // Opened again: no migration is applied twice, and the data is kept.
    let again = backend.reopen().await;
    assert_eq!(
        again
            .list_trigger_instances(&TriggerInstanceQuery::default())
            .await
            .unwrap()
            .total,
        205
    );
}

/// Under commits that never pause, a PASSIVE checkpoint never catches up, and SQLite starts the
/// WAL over only once everything in it is copied. The store must still keep the WAL near its
/// limit instead of letting it grow with every commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_stays_near_its_limit_under_sustained_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.db");
    let limit: u64 = 256 * 1024;
    let store = SqliteStore::open_with_wal_limit(&path, limit)
        .await
        .unwrap();
    let wal = dir.path().join("wal.db-wal");
    let filler = "x".repeat(2 * 1024);
    let (mut written, mut committed) = (0u64, 0u64);
    let started = std::time::Instant::now();
    // Back to back, 8 events of 2 KiB at a time, for 3 s (15 background checkpoints) and at
    // least 16 times the limit.
    while started.elapsed() < std::time::Duration::from_secs(3) || written < 16 * limit {
        let events: Vec<NewEvent> = (0..8)
            .map(|i| {
                let mut e = event("core.wal", committed + i, "2026-11-30T01:00:00.000000Z");
                e.instances[0].payload = json!({"filler": filler}).to_string();
                e
            })
            .collect();
        store.commit_events(&events).await.unwrap();
        written += 8 * filler.len() as u64;
        committed += 8;
    }
    let size = std::fs::metadata(&wal).unwrap().len();
    // The WAL holds what was written since it last started over (a few checkpoints, 200 ms
    // apart, at most a small part of the run); without the restart it holds everything
    // written, and more (each 4 KiB page is written again by every commit that adds to it).
    // (On a loaded machine a restart is sometimes deferred by a reader for a second or more:
    // one CI-like run saw 54% of the payload bytes, hence three quarters.)
    assert!(
        size < written / 4 * 3,
        "the WAL is {size} bytes with a limit of {limit} after {written} bytes of payloads"
    );
    assert_eq!(
        store
            .list_trigger_instances(&TriggerInstanceQuery {
                triggers: vec!["core.wal".into()],
                ..Default::default()
            })
            .await
            .unwrap()
            .total,
        committed
    );
}

/// A pending instance whose payload cannot be decoded comes back as `Unreadable`, with its id, in
/// its place among the others, so the engine can fail it and go on.
async fn pending_reports_an_unreadable_instance_in_its_place(backend: &Backend) {
    let store = &backend.store;
    let time = "2026-11-30T01:00:00.000000Z";
    let mut corrupt = event("core.x", 1, time);
    corrupt.instances[0].payload = "{\"n\": 1".into();
    let corrupt_id = corrupt.instances[0].id.clone();
    store
        .commit_events(&[event("core.x", 0, time), corrupt, event("core.x", 2, time)])
        .await
        .unwrap();
    if let Kind::Sqlite = backend.kind {
        // And text that is not UTF-8, written from outside (PostgreSQL refuses such text).
        let outside = rusqlite::Connection::open(backend.dir.path().join("store.db")).unwrap();
        outside
            .execute(
                "INSERT INTO trigger_instances (id, trigger_ref, payload, occurrence_time, status, updated_at) \
                 VALUES ('bytes', 'core.x', CAST(X'7B22FF227D' AS TEXT), ?1, 'pending', ?1)",
                [time],
            )
            .unwrap();
    }
    let pending = store.pending_after(0, 100).await.unwrap();
    let expected = if backend.is_shared() { 3 } else { 4 };
    assert_eq!(pending.len(), expected, "{pending:?}");
    assert_eq!(pending[0].1.as_ref().unwrap().payload, json!({"n": 0}));
    let unreadable = pending[1].1.as_ref().unwrap_err();
    assert_eq!(unreadable.id, corrupt_id);
    assert!(unreadable.reason.contains("stored JSON"), "{unreadable:?}");
    assert_eq!(pending[2].1.as_ref().unwrap().payload, json!({"n": 2}));
    if !backend.is_shared() {
        assert_eq!(pending[3].1.as_ref().unwrap_err().id, "bytes");
    }
    // Reading such a row through the API's queries fails, naming the row.
    let one = store.trigger_instance(&corrupt_id).await.unwrap_err();
    assert!(
        one.to_string().starts_with(&format!(
            "corrupt record: trigger instance {corrupt_id}: stored JSON"
        )),
        "{one}"
    );
    let list = store
        .list_trigger_instances(&TriggerInstanceQuery::default())
        .await
        .unwrap_err();
    let named = [
        format!("trigger instance {corrupt_id}: "),
        "trigger instance bytes: ".into(),
    ];
    assert!(
        named.iter().any(|n| list
            .to_string()
            .starts_with(&format!("corrupt record: {n}"))),
        "{list}"
    );
}

fn enforcement_of(instance: &str, rule: &str, execution: Option<&str>) -> RuleEnforcement {
    RuleEnforcement {
        id: ids::object_id(),
        trigger_instance_id: instance.into(),
        execution_id: execution.map(Into::into),
        failure_reason: None,
        rule_ref: rule.into(),
        rule_id: format!("id-{rule}"),
        rule_uid: format!("rule:{rule}"),
        enforced_at: ids::now(),
        status: stormhook_storage::EnforcementStatus::Succeeded,
    }
}

fn execution_of(instance: &str, rule: &str, start: &str) -> Execution {
    Execution {
        id: ids::object_id(),
        action_ref: "core.noop".into(),
        runner: "noop".into(),
        status: ExecutionStatus::Requested,
        start_timestamp: start.into(),
        end_timestamp: None,
        user: Some("stanley".into()),
        rule_ref: Some(rule.into()),
        trigger_instance_id: Some(instance.into()),
        due_at: None,
        run_parameters: json!({}),
        document: json!({"status": "requested"}),
    }
}

/// The result of evaluating `instance` with `rules` matched: one enforcement and one
/// requested execution per rule.
fn evaluation(instance: &str, rules: &[&str]) -> FinishedInstance {
    let executions: Vec<Execution> = rules
        .iter()
        .map(|r| execution_of(instance, r, &ids::now()))
        .collect();
    FinishedInstance {
        id: instance.into(),
        status: stormhook_storage::InstanceStatus::Processed,
        enforcements: rules
            .iter()
            .zip(&executions)
            .map(|(r, e)| enforcement_of(instance, r, Some(&e.id)))
            .collect(),
        executions,
    }
}

/// One enforcement per (trigger instance, rule): an instance evaluated again (after a crash,
/// or on another node after a lease expired) records no second enforcement and requests no
/// second execution, in a later call or in the same batch; a rule the first evaluation did
/// not match is still recorded.
async fn evaluating_an_instance_twice_requests_its_action_once(backend: &Backend) {
    let store = &backend.store;
    let e = event("core.twice", 0, "2026-11-30T02:00:00.000000Z");
    let instance = e.instances[0].id.clone();
    store.commit_events(&[e]).await.unwrap();
    let first = evaluation(&instance, &["p.a"]);
    store
        .finish_trigger_instances(std::slice::from_ref(&first))
        .await
        .unwrap();
    let again = evaluation(&instance, &["p.a", "p.b"]);
    let third = evaluation(&instance, &["p.b"]);
    store
        .finish_trigger_instances(&[again.clone(), third])
        .await
        .unwrap();
    let enforcements = store
        .list_rule_enforcements(&stormhook_storage::EnforcementQuery {
            trigger_instance: Some(instance.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut kept: Vec<(String, String)> = enforcements
        .items
        .iter()
        .map(|e| (e.rule_ref.clone(), e.id.clone()))
        .collect();
    kept.sort();
    assert_eq!(
        kept,
        [
            ("p.a".to_owned(), first.enforcements[0].id.clone()),
            ("p.b".to_owned(), again.enforcements[1].id.clone()),
        ]
    );
    let executions = store
        .list_executions(&ExecutionQuery {
            trigger_instance: Some(instance.clone()),
            ascending: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut stored: Vec<String> = executions.items.iter().map(|e| e.id.clone()).collect();
    stored.sort();
    let mut expected = vec![
        first.executions[0].id.clone(),
        again.executions[1].id.clone(),
    ];
    expected.sort();
    assert_eq!(stored, expected);
    assert_eq!(
        store
            .trigger_instance(&instance)
            .await
            .unwrap()
            .unwrap()
            .status,
        "processed"
    );
}

/// Retention: only finished records older than the cut go, at most `limit` at a time, oldest
/// first; traces go once no trigger instance refers to them.
async fn purge_deletes_old_finished_records_in_batches(backend: &Backend) {
    let store = &backend.store;
    let old = |n: u64| format!("2020-01-01T00:00:{n:02}.000000Z");
    let cut = "2021-01-01T00:00:00.000000Z";
    // Five old instances (three finished, two still pending) and one new finished one.
    let events: Vec<NewEvent> = (0..5)
        .map(|n| event("core.old", n, &old(n)))
        .chain([event("core.new", 9, "2026-11-30T03:00:00.000000Z")])
        .collect();
    store.commit_events(&events).await.unwrap();
    for e in events[..3].iter().chain(&events[5..]) {
        store
            .set_trigger_instance_status(
                &e.instances[0].id,
                stormhook_storage::InstanceStatus::Processed,
            )
            .await
            .unwrap();
    }
    // Executions: old completed ones, an old running one, a new completed one.
    let mut executions = Vec::new();
    for (n, status, end) in [
        (0, ExecutionStatus::Succeeded, Some(old(10))),
        (1, ExecutionStatus::Failed, Some(old(11))),
        (2, ExecutionStatus::Running, None),
        (
            3,
            ExecutionStatus::Canceled,
            Some("2026-11-30T03:00:00.000000Z".to_owned()),
        ),
    ] {
        let mut e = execution_of(&events[n].instances[0].id, "p.r", &old(n as u64));
        e.status = status;
        e.end_timestamp = end;
        store.insert_execution(&e, None).await.unwrap();
        executions.push(e);
    }
    let mut enforcement = enforcement_of(&events[0].instances[0].id, "p.r", None);
    enforcement.enforced_at = old(5);
    let mut newer = enforcement_of(&events[1].instances[0].id, "p.r", None);
    newer.enforced_at = "2026-11-30T03:00:00.000000Z".into();
    store
        .finish_trigger_instances(&[FinishedInstance {
            id: events[0].instances[0].id.clone(),
            status: stormhook_storage::InstanceStatus::Processed,
            enforcements: vec![enforcement.clone(), newer.clone()],
            executions: vec![],
        }])
        .await
        .unwrap();

    // Three old finished instances, two at a time.
    assert_eq!(
        store
            .purge(Retained::TriggerInstances, cut, 2)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .purge(Retained::TriggerInstances, cut, 2)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .purge(Retained::TriggerInstances, cut, 2)
            .await
            .unwrap(),
        0
    );
    let left = store
        .list_trigger_instances(&TriggerInstanceQuery::default())
        .await
        .unwrap();
    let mut left: Vec<String> = left.items.into_iter().map(|t| t.id).collect();
    left.sort();
    let mut kept: Vec<String> = events[3..]
        .iter()
        .map(|e| e.instances[0].id.clone())
        .collect();
    kept.sort();
    assert_eq!(left, kept, "the pending and the new instances stay");
    // Their traces go with them; the others' stay.
    assert_eq!(store.purge(Retained::Traces, cut, 100).await.unwrap(), 3);
    assert!(store.trace(&events[0].trace.id).await.unwrap().is_none());
    assert!(store.trace(&events[3].trace.id).await.unwrap().is_some());
    assert_eq!(
        store.purge(Retained::Enforcements, cut, 100).await.unwrap(),
        1
    );
    assert!(
        store
            .rule_enforcement(&enforcement.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.rule_enforcement(&newer.id).await.unwrap().is_some());
    assert_eq!(store.purge(Retained::Executions, cut, 1).await.unwrap(), 1);
    assert_eq!(store.purge(Retained::Executions, cut, 1).await.unwrap(), 1);
    assert_eq!(store.purge(Retained::Executions, cut, 1).await.unwrap(), 0);
    let left = store
        .list_executions(&ExecutionQuery::default())
        .await
        .unwrap();
    let mut left: Vec<String> = left.items.into_iter().map(|e| e.id).collect();
    left.sort();
    let mut kept = vec![executions[2].id.clone(), executions[3].id.clone()];
    kept.sort();
    assert_eq!(left, kept, "the running and the new executions stay");
}

/// A document as the executor writes it: big parts that never change (on SQLite kept apart
/// and written once, migration 0009), a `null` one, and the parts each move rewrites.
fn full_document(id: &str) -> serde_json::Value {
    json!({
        "id": id,
        "action": {"ref": "core.noop", "parameters": {"x": {"type": "string"}}},
        "runner": {"name": "noop", "runner_parameters": {}},
        "rule": {"ref": "t.r", "criteria": {"trigger.body.a": {"type": "equals", "pattern": 1}}},
        "trigger": {"ref": "core.st2.webhook", "parameters": {"url": "x"}},
        "trigger_type": null,
        "trigger_instance": {"id": "ti", "payload": {"body": {"a": 1}, "headers": {"h": "v"}}},
        "status": "requested",
        "parameters": {"x": "y"},
        "context": {"user": "stanley"},
        "log": [{"status": "requested", "timestamp": "2026-12-01T00:00:00.000000Z"}],
    })
}

/// An execution's document is read back exactly as written: after it is stored with its
/// enforcement, claimed, and completed, through `execution` and `list_executions`.
async fn an_execution_document_comes_back_whole_after_its_moves(backend: &Backend) {
    let store = &backend.store;
    let e = event("core.whole", 0, "2026-12-01T00:00:00.000000Z");
    let instance = e.instances[0].id.clone();
    store.commit_events(&[e]).await.unwrap();
    let mut finished = evaluation(&instance, &["t.r"]);
    let id = finished.executions[0].id.clone();
    finished.executions[0].document = full_document(&id);
    store.finish_trigger_instances(&[finished]).await.unwrap();
    let stored = store.execution(&id).await.unwrap().unwrap();
    assert_eq!(stored.document, full_document(&id));

    let claimed = store
        .claim_requested(10, stormhook_storage::Runners::Any, &|e: &mut Execution| {
            e.status = ExecutionStatus::Running;
            e.document["status"] = json!("running");
            e.document["liveaction"] = json!({"runner_info": {"node": "a"}});
        })
        .await
        .unwrap();
    let mine: Vec<&Execution> = claimed.iter().filter(|e| e.id == id).collect();
    assert_eq!(mine.len(), 1, "claimed: {claimed:?}");
    let mut expected = full_document(&id);
    expected["status"] = json!("running");
    expected["liveaction"] = json!({"runner_info": {"node": "a"}});
    assert_eq!(mine[0].document, expected, "as claimed");
    assert_eq!(
        store.execution(&id).await.unwrap().unwrap().document,
        expected
    );

    let mut done = mine[0].clone();
    done.status = ExecutionStatus::Succeeded;
    done.end_timestamp = Some(ids::now());
    done.document["status"] = json!("succeeded");
    done.document["result"] = json!({"ok": true});
    expected = done.document.clone();
    let written = store
        .update_executions(&[done], &[ExecutionStatus::Running])
        .await
        .unwrap();
    assert_eq!(written, vec![true]);
    assert_eq!(
        store.execution(&id).await.unwrap().unwrap().document,
        expected
    );
    let listed = store
        .list_executions(&ExecutionQuery {
            ids: vec![id.clone()],
            ..ExecutionQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.total, 1);
    assert_eq!(listed.items[0].document, expected, "as listed");
}

/// Conditions on document fields (the API's `rule` name, `context.user`, `filter=`: a string
/// equal to a text value or to a number's text, or an absent field) and inclusive time ranges
/// select the same executions on both backends; the fields kept apart on SQLite (`rule`) are
/// found too.
async fn executions_filter_on_document_fields_and_inclusive_time_ranges(backend: &Backend) {
    let store = &backend.store;
    let times = [
        "2026-12-02T00:00:01.000000Z",
        "2026-12-02T00:00:02.000000Z",
        "2026-12-02T00:00:03.000000Z",
    ];
    let mut all = Vec::new();
    for (n, time) in times.iter().enumerate() {
        let mut e = execution_of("ti", "t.r", time);
        e.document = full_document(&e.id);
        e.document["rule"]["name"] = json!(format!("rule-{n}"));
        e.document["result_size"] = json!(n * 10);
        if n == 2 {
            e.document.as_object_mut().unwrap().remove("rule");
            e.document["context"]["user"] = json!("ada");
        }
        store.insert_execution(&e, None).await.unwrap();
        all.push(e.id);
    }
    /// The positions in `all` of the executions the query finds, oldest first.
    async fn find(
        store: &Arc<dyn Store>,
        all: &[String],
        fields: Vec<(&str, Option<&str>)>,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Vec<usize> {
        let page = store
            .list_executions(&ExecutionQuery {
                ids: all.to_vec(),
                fields: fields
                    .into_iter()
                    .map(|(path, value)| FieldFilter {
                        path: path.split('.').map(str::to_owned).collect(),
                        value: value.map(str::to_owned),
                    })
                    .collect(),
                timestamp_from: from.map(str::to_owned),
                timestamp_to: to.map(str::to_owned),
                ascending: true,
                ..ExecutionQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(page.total, page.items.len() as u64);
        page.items
            .iter()
            .map(|e| all.iter().position(|id| *id == e.id).unwrap())
            .collect()
    }
    let find = |fields, from, to| find(store, &all, fields, from, to);
    assert_eq!(
        find(vec![("rule.name", Some("rule-1"))], None, None).await,
        [1]
    );
    assert_eq!(find(vec![("rule", None)], None, None).await, [2]);
    assert_eq!(
        find(vec![("context.user", Some("stanley"))], None, None).await,
        [0, 1]
    );
    assert_eq!(
        find(
            vec![
                ("context.user", Some("stanley")),
                ("result_size", Some("10"))
            ],
            None,
            None
        )
        .await,
        [1]
    );
    assert_eq!(
        find(vec![("trigger_type", None)], None, None).await,
        [0, 1, 2],
        "JSON null"
    );
    assert_eq!(
        find(vec![("status", Some("nope"))], None, None).await,
        Vec::<usize>::new()
    );
    assert_eq!(
        find(
            vec![("action.ref", Some("core.noop"))],
            Some(times[1]),
            Some(times[2])
        )
        .await,
        [1, 2],
        "inclusive at both ends"
    );
    assert_eq!(find(vec![], Some(times[1]), Some(times[1])).await, [1]);
}

/// A claim by runner class takes only those runners' executions, oldest first, and leaves
/// the others `requested` (the executor claims `core.local` and `core.http` runs only with a
/// free slot of their own).
async fn a_claim_takes_only_the_runners_asked_for(backend: &Backend) {
    let store = &backend.store;
    let mut ids_by_runner = Vec::new();
    for (n, runner) in ["local-shell-cmd", "noop", "local-shell-cmd", "wasm"]
        .iter()
        .enumerate()
    {
        let mut e = execution_of(
            "ti-claim",
            "t.claim",
            &format!("2026-12-01T00:00:0{n}.000000Z"),
        );
        e.runner = (*runner).into();
        e.rule_ref = None;
        store.insert_execution(&e, None).await.unwrap();
        ids_by_runner.push((e.id, *runner));
    }
    let heavy = ["local-shell-cmd", "http-request"];
    let start = |e: &mut Execution| e.status = ExecutionStatus::Running;
    let light = store
        .claim_requested(10, stormhook_storage::Runners::Except(&heavy), &start)
        .await
        .unwrap();
    let light: Vec<&str> = light
        .iter()
        .filter(|e| e.trigger_instance_id.as_deref() == Some("ti-claim"))
        .map(|e| e.runner.as_str())
        .collect();
    assert_eq!(light, vec!["noop", "wasm"]);
    let one_heavy = store
        .claim_requested(1, stormhook_storage::Runners::Only(&heavy), &start)
        .await
        .unwrap();
    assert_eq!(one_heavy.len(), 1);
    assert_eq!(one_heavy[0].id, ids_by_runner[0].0, "the oldest first");
    let left = store
        .list_executions(&ExecutionQuery {
            statuses: vec!["requested".into()],
            trigger_instance: Some("ti-claim".into()),
            ..ExecutionQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(left.total, 1);
    assert_eq!(left.items[0].id, ids_by_runner[2].0);
}

/// Executions requested with StackStorm's `delay` wait `delayed` until they are due: the
/// store says when the earliest is due, and promotes those due (earliest first) to `requested`
/// each once, even with two promoters at the same time (two nodes), and never one that was
/// canceled meanwhile.
async fn delayed_executions_are_promoted_once_when_due(backend: &Backend) {
    let store = &backend.store;
    assert_eq!(store.next_delayed().await.unwrap(), None);
    let delayed = |due: &str| {
        let mut e = execution_of("ti-delay", "t.delay", &ids::now());
        e.rule_ref = None;
        e.status = ExecutionStatus::Delayed;
        e.document = json!({"status": "delayed"});
        e.due_at = Some(due.into());
        e
    };
    let later = delayed("2026-12-01T00:00:02.000000Z");
    let earlier = delayed("2026-12-01T00:00:01.000000Z");
    // StackStorm's `test_re_run_with_very_large_delay`: 10**10 ms on, simply not due.
    let far = delayed(&ids::after(std::time::Duration::from_millis(
        10_000_000_000,
    )));
    let canceled = delayed("2026-12-01T00:00:00.000000Z");
    for e in [&later, &earlier, &far, &canceled] {
        store.insert_execution(e, None).await.unwrap();
    }
    let mut cancel = canceled.clone();
    cancel.status = ExecutionStatus::Canceled;
    assert!(
        store
            .update_execution(&cancel, ExecutionStatus::BEFORE_RUN)
            .await
            .unwrap()
    );
    assert_eq!(
        store.next_delayed().await.unwrap().as_deref(),
        Some("2026-12-01T00:00:01.000000Z")
    );
    let promote = |e: &mut Execution| {
        e.status = ExecutionStatus::Requested;
        e.document["status"] = json!("requested");
    };
    // Two promoters at once: each due execution is moved by one of them.
    let now = ids::now();
    let (a, b) = tokio::join!(
        store.promote_delayed(&now, 10, &promote),
        store.promote_delayed(&now, 10, &promote)
    );
    let mut moved: Vec<String> = a
        .unwrap()
        .into_iter()
        .chain(b.unwrap())
        .map(|e| e.id)
        .collect();
    moved.sort();
    let mut expected = vec![earlier.id.clone(), later.id.clone()];
    expected.sort();
    assert_eq!(
        moved, expected,
        "each due one moved once, the canceled one not"
    );
    for id in [&earlier.id, &later.id] {
        let e = store.execution(id).await.unwrap().unwrap();
        assert_eq!(e.status, ExecutionStatus::Requested);
        assert_eq!(e.document["status"], "requested");
    }
    assert_eq!(
        store.execution(&far.id).await.unwrap().unwrap().status,
        ExecutionStatus::Delayed
    );
    assert_eq!(
        store.execution(&canceled.id).await.unwrap().unwrap().status,
        ExecutionStatus::Canceled
    );
    assert_eq!(store.next_delayed().await.unwrap(), far.due_at);
    assert!(
        store
            .promote_delayed(&ids::now(), 10, &promote)
            .await
            .unwrap()
            .is_empty()
    );
    // Earliest first, at most `limit`.
    let first = delayed("2026-12-01T00:00:03.000000Z");
    let second = delayed("2026-12-01T00:00:04.000000Z");
    store.insert_execution(&second, None).await.unwrap();
    store.insert_execution(&first, None).await.unwrap();
    let one = store
        .promote_delayed(&ids::now(), 1, &promote)
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].id, first.id);
    assert_eq!(one[0].due_at, first.due_at, "the due time is kept");
}

/// Writes that run at the same time may share one transaction (on SQLite they do: one writer
/// thread commits every write waiting): one that fails gets its own error and takes nothing
/// else down with it.
async fn a_failing_write_fails_alone_among_concurrent_writes(backend: &Backend) {
    let store = &backend.store;
    let taken = execution_of("ti-dup", "t.dup", &ids::now());
    store.insert_execution(&taken, None).await.unwrap();
    let mut writes = Vec::new();
    let mut events = Vec::new();
    for n in 0..40 {
        let e = event("core.alone", n, &ids::now());
        events.push(e.instances[0].id.clone());
        let (store, taken) = (Arc::clone(store), taken.clone());
        writes.push(tokio::spawn(async move {
            let (dup, stored) = tokio::join!(
                store.insert_execution(&taken, None),
                store.commit_events(std::slice::from_ref(&e))
            );
            (dup, stored)
        }));
    }
    for write in writes {
        let (dup, stored) = write.await.unwrap();
        assert!(
            matches!(dup, Err(StorageError::Conflict { .. })),
            "the duplicate is refused as a conflict: {dup:?}"
        );
        stored.expect("the events written beside it are stored");
    }
    for id in events {
        assert!(
            store.trigger_instance(&id).await.unwrap().is_some(),
            "instance {id} is stored"
        );
    }
}

/// `event` with a delivery key expiring at `expires_at`.
fn delivery(n: u64, key: &str, expires_at: &str) -> NewEvent {
    let mut e = event("core.delivered", n, "2026-11-30T10:00:00.000000Z");
    e.delivery = Some(DeliveryKey {
        key: key.to_owned(),
        expires_at: expires_at.to_owned(),
    });
    e
}

async fn delivered(store: &Arc<dyn Store>) -> usize {
    store
        .list_trigger_instances(&TriggerInstanceQuery {
            triggers: vec!["core.delivered".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .total as usize
}

/// Replay protection in the store: a key is held by the first delivery until it expires;
/// later ones, in the same batch, in later batches, or concurrent (on PostgreSQL, from a
/// second node too), are duplicates that name the first one's trace and store nothing.
async fn a_delivery_id_is_stored_once_within_its_window(backend: &Backend) {
    let store = Arc::clone(&backend.store);
    let later = "2999-01-01T00:00:00.000000Z";
    // One batch: the first event with the key is stored, the others are its duplicates.
    let batch = [
        delivery(0, "hook k1", later),
        delivery(1, "hook k1", later),
        event("core.delivered", 2, "2026-11-30T10:00:00.000000Z"),
        delivery(3, "hook k1", later),
    ];
    let outcomes = store.commit_events(&batch).await.unwrap();
    let first = Committed::Duplicate {
        trace_id: batch[0].trace.id.clone(),
        trace_tag: batch[0].trace.trace_tag.clone(),
    };
    assert_eq!(
        outcomes,
        [
            Committed::Stored,
            first.clone(),
            Committed::Stored,
            first.clone()
        ]
    );
    assert_eq!(delivered(&store).await, 2);
    // A later batch: still a duplicate of the first.
    let again = store
        .commit_events(&[delivery(4, "hook k1", later)])
        .await
        .unwrap();
    assert_eq!(again, [first]);

    // Concurrent deliveries of one key, from this store and (PostgreSQL) a second node.
    let other = if backend.is_shared() {
        backend.reopen().await
    } else {
        Arc::clone(&store)
    };
    let mut tasks = Vec::new();
    for n in 0..40u64 {
        let store = if n % 2 == 0 {
            Arc::clone(&store)
        } else {
            Arc::clone(&other)
        };
        tasks.push(tokio::spawn(async move {
            let e = delivery(100 + n, "hook k2", "2999-01-01T00:00:00.000000Z");
            let trace = e.trace.id.clone();
            (trace, store.commit_events(&[e]).await.unwrap().remove(0))
        }));
    }
    let mut stored = Vec::new();
    let mut originals = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (trace, Committed::Stored) => stored.push(trace),
            (_, Committed::Duplicate { trace_id, .. }) => originals.push(trace_id),
        }
    }
    assert_eq!(stored.len(), 1, "one of 40 concurrent deliveries is stored");
    assert!(originals.iter().all(|t| *t == stored[0]), "{originals:?}");
    assert_eq!(delivered(&store).await, 3);

    // An expired key is taken over by the next delivery (and expired keys are deleted).
    let past = "2000-01-01T00:00:00.000000Z";
    assert_eq!(
        store
            .commit_events(&[delivery(200, "hook k3", past)])
            .await
            .unwrap(),
        [Committed::Stored]
    );
    assert_eq!(
        store
            .commit_events(&[delivery(201, "hook k3", later)])
            .await
            .unwrap(),
        [Committed::Stored]
    );
    assert_eq!(delivered(&store).await, 5);
}

/// Traces are found by an execution that carries them (`context.trace_context.id_`) and by a
/// rule enforced for one of their trigger instances, newest or oldest first (StackStorm's
/// `TracesController`: `execution`, `rule`, `sort_asc`; `test_traces.py`).
async fn traces_filter_on_their_executions_and_rules(backend: &Backend) {
    let store = &backend.store;
    let events: Vec<NewEvent> = (0..3)
        .map(|n| event("core.a", n, &format!("2026-12-03T10:00:0{n}.000000Z")))
        .collect();
    store.commit_events(&events).await.unwrap();
    let instance = events[1].instances[0].id.clone();
    let mut execution = execution_of(&instance, "p.r", "2026-12-03T10:00:01.500000Z");
    execution.document = json!({"status": "requested",
        "context": {"trace_context": {"id_": events[1].trace.id, "trace_tag": "tag-1"}}});
    store
        .finish_trigger_instances(&[stormhook_storage::FinishedInstance {
            id: instance.clone(),
            status: stormhook_storage::InstanceStatus::Processed,
            enforcements: vec![enforcement_of(&instance, "p.r", Some(&execution.id))],
            executions: vec![execution.clone()],
        }])
        .await
        .unwrap();
    let find = async |query: TraceQuery| -> Vec<String> {
        let page = store.list_traces(&query).await.unwrap();
        page.items.into_iter().map(|t| t.id).collect()
    };
    let trace = |n: usize| events[n].trace.id.clone();
    assert_eq!(
        find(TraceQuery {
            execution: Some(execution.id.clone()),
            ..TraceQuery::default()
        })
        .await,
        [trace(1)]
    );
    assert_eq!(
        find(TraceQuery {
            rule: Some("id-p.r".into()),
            ..TraceQuery::default()
        })
        .await,
        [trace(1)]
    );
    for (execution, rule) in [(Some("nope"), None), (None, Some("nope"))] {
        let query = TraceQuery {
            execution: execution.map(Into::into),
            rule: rule.map(Into::into),
            ..TraceQuery::default()
        };
        assert!(find(query).await.is_empty());
    }
    assert_eq!(
        find(TraceQuery::default()).await,
        [trace(2), trace(1), trace(0)]
    );
    let ascending = TraceQuery {
        ascending: true,
        limit: Some(2),
        ..TraceQuery::default()
    };
    assert_eq!(find(ascending).await, [trace(0), trace(1)]);

    // A page of traces reads its components at once: the executions whose context names one
    // of the traces, the enforcements of any of their trigger instances.
    let of_traces = store
        .list_executions(&ExecutionQuery {
            traces: vec![trace(0), trace(1), "nope".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        of_traces.items.iter().map(|e| &e.id).collect::<Vec<_>>(),
        [&execution.id]
    );
    let none = store
        .list_executions(&ExecutionQuery {
            traces: vec![trace(0), trace(2)],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(none.total, 0);
    let enforced = store
        .list_rule_enforcements(&stormhook_storage::EnforcementQuery {
            trigger_instances: vec![events[0].instances[0].id.clone(), instance.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(enforced.items.len(), 1);
    assert_eq!(enforced.items[0].trigger_instance_id, instance);
}

/// An event whose trace is stored already adds its trigger instances to it, as StackStorm's
/// `add_or_update_given_trace_db` pushes a completed execution's action trigger into the
/// execution's trace (`test_traces.py`: test_query_by_trace_tag, one trace per tag). Joining
/// events share a group commit with new ones, and two joining one trace in one batch both
/// join it. An execution whose context names no trace has the trace of its own id.
async fn an_event_joins_a_stored_trace(backend: &Backend) {
    let store = &backend.store;
    let first = event("core.a", 0, "2026-12-04T10:00:00.000000Z");
    store
        .commit_events(std::slice::from_ref(&first))
        .await
        .unwrap();
    let joining = |n: u64, trace: Trace| {
        let mut e = event(
            "core.st2.generic.actiontrigger",
            n,
            "2026-12-04T10:00:05.000000Z",
        );
        e.instances[0].trace_id = Some(trace.id.clone());
        e.trace = trace;
        e
    };
    let again = |n: u64| Trace {
        id: first.trace.id.clone(),
        trace_tag: format!("execution-{n}"),
        start_timestamp: "2026-12-04T10:00:04.000000Z".into(),
        trigger_instances: vec![],
    };
    let fresh = event("core.b", 3, "2026-12-04T10:00:06.000000Z");
    let batch = [joining(1, again(1)), joining(2, again(2)), fresh];
    let outcomes = store.commit_events(&batch).await.unwrap();
    assert_eq!(
        outcomes,
        [Committed::Stored, Committed::Stored, Committed::Stored]
    );
    let trace = store.trace(&first.trace.id).await.unwrap().unwrap();
    assert_eq!(
        (trace.trace_tag.as_str(), trace.start_timestamp.as_str()),
        ("tag-0", "2026-12-04T10:00:00.000000Z"),
        "the stored trace is kept as it is"
    );
    let held: Vec<&str> = trace
        .trigger_instances
        .iter()
        .map(|t| t.0.as_str())
        .collect();
    assert_eq!(
        held,
        [
            first.instances[0].id.as_str(),
            batch[0].instances[0].id.as_str(),
            batch[1].instances[0].id.as_str()
        ]
    );
    let all = store.list_traces(&TraceQuery::default()).await.unwrap();
    assert_eq!(all.total, 2);
    let tagged = TraceQuery {
        trace_tag: Some("tag-0".into()),
        ..TraceQuery::default()
    };
    assert_eq!(store.list_traces(&tagged).await.unwrap().total, 1);

    // A run by hand starts the trace of its id with it, found by the execution; its action
    // trigger joins it.
    let mut manual = execution_of("none", "none", "2026-12-04T10:00:07.000000Z");
    manual.rule_ref = None;
    manual.trigger_instance_id = None;
    manual.document = json!({"status": "succeeded", "context": {"user": "stanley"}});
    let own = Trace {
        id: manual.id.clone(),
        trace_tag: format!("execution-{}", manual.id),
        start_timestamp: manual.start_timestamp.clone(),
        trigger_instances: vec![],
    };
    store.insert_execution(&manual, Some(&own)).await.unwrap();
    let by_execution = TraceQuery {
        execution: Some(manual.id.clone()),
        ..TraceQuery::default()
    };
    let found = store.list_traces(&by_execution).await.unwrap().items;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].trace_tag, format!("execution-{}", manual.id));
    assert!(found[0].trigger_instances.is_empty());
    let trigger = joining(4, own);
    store
        .commit_events(std::slice::from_ref(&trigger))
        .await
        .unwrap();
    let found = store.list_traces(&by_execution).await.unwrap().items;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, manual.id);
    assert_eq!(found[0].trigger_instances[0].0, trigger.instances[0].id);
}
