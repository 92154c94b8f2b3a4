//! Several nodes on one PostgreSQL store: claims never overlap, lapsed claims are taken over
//! and renewed ones are not, changes reach every node, one node at a time purges, nodes may
//! start together. Each test is two or more `PgStore`s (different node ids) on a fresh schema;
//! without `STORMHOOK_TEST_DATABASE_URL` they are skipped loudly (see `common/backends.rs`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::Connection as _;
use stormhook_storage::postgres::{PURGE_LOCK, PgOptions, PgStore};
use stormhook_storage::{
    Change, Execution, ExecutionStatus, InstanceStatus, NewEvent, Retained, Store, StoredRule,
    Trace, TriggerInstance, ids,
};

#[allow(unused_macros)]
#[macro_use]
#[path = "common/backends.rs"]
mod backends;

use backends::PgSchema;

/// A fresh schema, or return (the skip was said) without the test database.
macro_rules! schema_or_skip {
    ($test:ident) => {
        match PgSchema::fresh(concat!(module_path!(), "::", stringify!($test))).await {
            Some(schema) => schema,
            None => return,
        }
    };
}

fn event(n: u64) -> NewEvent {
    let trace = Trace {
        id: ids::object_id(),
        trace_tag: format!("tag-{n}"),
        start_timestamp: ids::now(),
        trigger_instances: vec![],
    };
    let instance = TriggerInstance {
        id: ids::object_id(),
        trigger: "core.cluster".into(),
        trigger_type: None,
        payload: json!({"n": n}),
        occurrence_time: ids::now(),
        status: InstanceStatus::Pending,
        trace_id: Some(trace.id.clone()),
        depth: 0,
    };
    NewEvent::new(trace, vec![instance])
}

fn requested(n: u64) -> Execution {
    Execution {
        id: ids::object_id(),
        action_ref: "core.noop".into(),
        runner: "noop".into(),
        status: ExecutionStatus::Requested,
        start_timestamp: ids::now(),
        end_timestamp: None,
        user: None,
        rule_ref: None,
        trigger_instance_id: None,
        due_at: None,
        run_parameters: json!({}),
        document: json!({"n": n}),
    }
}

/// Nodes `a` and `b` on `schema` with `lease`, and their (shared) key file's directory.
async fn two_nodes(
    schema: &PgSchema,
    lease: Duration,
) -> (Arc<PgStore>, Arc<PgStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let a = Arc::new(schema.node("a", lease, &dir).await);
    let b = Arc::new(schema.node("b", lease, &dir).await);
    (a, b, dir)
}

/// How many rows `query` (a `SELECT count(*)`) counts in `schema`.
async fn count(schema: &PgSchema, query: &str) -> i64 {
    sqlx::query_scalar(query)
        .fetch_one(&mut schema.conn().await)
        .await
        .unwrap()
}

/// Claims in batches of `batch` until nothing is left to claim; the ids claimed.
async fn claim_all(store: Arc<PgStore>, batch: u64) -> Vec<String> {
    let mut claimed = Vec::new();
    loop {
        let got = store.pending_after(0, batch).await.unwrap();
        if got.is_empty() {
            return claimed;
        }
        claimed.extend(got.into_iter().map(|(_, t)| t.unwrap().id));
    }
}

/// The next change on `rx` equal to `wanted`, skipping others, within 10 s.
async fn expect_change(rx: &mut tokio::sync::broadcast::Receiver<Change>, wanted: Change) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Ok(change)) if change == wanted => return,
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("waiting for {wanted:?}: {e}"),
            Err(_) => panic!("{wanted:?} did not arrive within 10 s"),
        }
    }
}

/// Two nodes claiming at once, in batches, from one queue of 1,000 instances: every instance
/// is claimed by exactly one of them, and is recorded as that node's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_never_claim_the_same_instance() {
    let schema = schema_or_skip!(two_nodes_never_claim_the_same_instance);
    let (a, b, _dir) = two_nodes(&schema, Duration::from_secs(60)).await;
    let events: Vec<NewEvent> = (0..1000).map(event).collect();
    // Two group commits of 500 events: one multi-row insert per table each.
    for half in events.chunks(500) {
        a.commit_events(half).await.unwrap();
    }
    let (by_a, by_b) = tokio::join!(
        tokio::spawn(claim_all(Arc::clone(&a), 7)),
        tokio::spawn(claim_all(Arc::clone(&b), 7)),
    );
    let (by_a, by_b) = (by_a.unwrap(), by_b.unwrap());
    let set_a: HashSet<&String> = by_a.iter().collect();
    let set_b: HashSet<&String> = by_b.iter().collect();
    assert_eq!(set_a.len(), by_a.len(), "a claimed one twice");
    assert_eq!(set_b.len(), by_b.len(), "b claimed one twice");
    assert!(set_a.is_disjoint(&set_b), "both claimed some");
    let all: HashSet<&String> = events.iter().map(|e| &e.instances[0].id).collect();
    assert_eq!(&set_a | &set_b, all);
    // The store says the same: each is `processing`, owned by the node that got it.
    let owners: Vec<(String, String, String)> =
        sqlx::query_as("SELECT id, status, owner FROM trigger_instances")
            .fetch_all(&mut schema.conn().await)
            .await
            .unwrap();
    for (id, status, owner) in owners {
        assert_eq!(status, "processing");
        let expected = if set_a.contains(&id) { "a" } else { "b" };
        assert_eq!(owner, expected, "{id}");
    }
    eprintln!("a claimed {}, b claimed {}", by_a.len(), by_b.len());
}

/// Executions: two executors claiming `requested` ones at once never get the same one, and a
/// claimed execution is `running` under its node's lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_executors_never_claim_the_same_execution() {
    let schema = schema_or_skip!(two_executors_never_claim_the_same_execution);
    let (a, b, _dir) = two_nodes(&schema, Duration::from_secs(60)).await;
    for n in 0..100 {
        a.insert_execution(&requested(n), None).await.unwrap();
    }
    let claim = |store: Arc<PgStore>| async move {
        let mut ids = Vec::new();
        loop {
            let start = |e: &mut Execution| e.status = ExecutionStatus::Running;
            let got = store
                .claim_requested(3, stormhook_storage::Runners::Any, &start)
                .await
                .unwrap();
            if got.is_empty() {
                return ids;
            }
            assert!(got.iter().all(|e| e.status == ExecutionStatus::Running));
            ids.extend(got.into_iter().map(|e| e.id));
        }
    };
    let (by_a, by_b) = tokio::join!(
        tokio::spawn(claim(Arc::clone(&a))),
        tokio::spawn(claim(Arc::clone(&b)))
    );
    let (by_a, by_b) = (by_a.unwrap(), by_b.unwrap());
    let set_a: HashSet<&String> = by_a.iter().collect();
    let set_b: HashSet<&String> = by_b.iter().collect();
    assert!(set_a.is_disjoint(&set_b));
    assert_eq!(set_a.len() + set_b.len(), 100);
    assert_eq!(by_a.len() + by_b.len(), 100);
    let unleased = count(
        &schema,
        "SELECT count(*) FROM executions WHERE status <> 'running' OR owner IS NULL \
         OR lease_until <= now()",
    );
    assert_eq!(unleased.await, 0);
}

/// With a short lease and no renewal, another node claims the instances again once the lease
/// has passed (its node is taken for dead); while the holder renews, nobody else gets them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lapsed_claims_are_taken_over_and_renewed_ones_are_not() {
    let schema = schema_or_skip!(lapsed_claims_are_taken_over_and_renewed_ones_are_not);
    let lease = Duration::from_millis(300);
    let (a, b, _dir) = two_nodes(&schema, lease).await;
    let events: Vec<NewEvent> = (0..10).map(event).collect();
    a.commit_events(&events).await.unwrap();
    let first = a.pending_after(0, 100).await.unwrap();
    assert_eq!(first.len(), 10);
    assert!(b.pending_after(0, 100).await.unwrap().is_empty());

    // `a` stops renewing: after the lease, `b` evaluates them again, in the same order.
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    let again = b.pending_after(0, 100).await.unwrap();
    assert_eq!(
        again.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        first.iter().map(|(seq, _)| *seq).collect::<Vec<_>>()
    );

    // `b` renews every 100 ms for four leases, but only the instances it still holds (the
    // first seven; it lost track of the other three, as when a claim's answer is lost with
    // its connection): `a` never gets the seven back, and takes over the three.
    let ids: Vec<String> = again
        .iter()
        .map(|(_, i)| i.as_ref().unwrap().id.clone())
        .collect();
    let (held, lost) = ids.split_at(7);
    let renewing = {
        let (b, held) = (Arc::clone(&b), held.to_vec());
        tokio::spawn(async move {
            let until = Instant::now() + lease * 4;
            while Instant::now() < until {
                b.renew_leases(&held, &[]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let until = Instant::now() + lease * 4;
    let mut retaken = Vec::new();
    while Instant::now() < until {
        for (_, instance) in a.pending_after(0, 100).await.unwrap() {
            retaken.push(instance.unwrap().id);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    renewing.await.unwrap();
    // (`a` renews nothing either, so it takes them again after each lease.)
    retaken.sort();
    retaken.dedup();
    let mut lost = lost.to_vec();
    lost.sort();
    assert_eq!(
        retaken, lost,
        "only the claims b stopped renewing are taken over"
    );
    // Finishing releases the claim: nothing is claimable, and nothing is left `processing`.
    let finished: Vec<_> = again
        .iter()
        .map(|(_, t)| stormhook_storage::FinishedInstance {
            id: t.as_ref().unwrap().id.clone(),
            status: InstanceStatus::Processed,
            enforcements: vec![],
            executions: vec![],
        })
        .collect();
    b.finish_trigger_instances(&finished).await.unwrap();
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    assert!(a.pending_after(0, 100).await.unwrap().is_empty());
    let held = count(
        &schema,
        "SELECT count(*) FROM trigger_instances WHERE owner IS NOT NULL OR lease_until IS NOT NULL",
    );
    assert_eq!(held.await, 0);
}

/// Executions a node runs are orphans only once its lease has passed; `requested` ones are
/// never orphans; a cancel through another node keeps the owner, who finds it on renewal; a
/// completed execution is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphaned_executions_are_those_whose_lease_lapsed() {
    let schema = schema_or_skip!(orphaned_executions_are_those_whose_lease_lapsed);
    let lease = Duration::from_millis(400);
    let (a, b, dir) = two_nodes(&schema, lease).await;
    let (running, canceled, waiting) = (requested(0), requested(1), requested(2));
    for e in [&running, &canceled, &waiting] {
        a.insert_execution(e, None).await.unwrap();
    }
    // `a` moves two on to `scheduled` and `running` in one write (as its executor does).
    let start = |e: &mut Execution| e.status = ExecutionStatus::Running;
    let claimed = a
        .claim_requested(2, stormhook_storage::Runners::Any, &start)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let claimed_ids: HashSet<String> = claimed.iter().map(|e| e.id.clone()).collect();
    assert!(claimed_ids.contains(&running.id) && claimed_ids.contains(&canceled.id));
    for status in [
        ExecutionStatus::Scheduled,
        ExecutionStatus::Running,
        ExecutionStatus::Canceling,
        ExecutionStatus::Requested,
    ] {
        assert!(b.orphaned_executions(status).await.unwrap().is_empty());
    }

    // A cancel through `b`: the execution stays `a`'s, which its renewal reports.
    let mut canceling = claimed
        .iter()
        .find(|e| e.id == canceled.id)
        .unwrap()
        .clone();
    canceling.status = ExecutionStatus::Canceling;
    assert!(
        b.update_execution(&canceling, &[ExecutionStatus::Running])
            .await
            .unwrap()
    );
    let a_runs: Vec<String> = claimed.iter().map(|e| e.id.clone()).collect();
    let renewal = a.renew_leases(&[], &a_runs).await.unwrap();
    assert_eq!(renewal.canceling, std::slice::from_ref(&canceled.id));
    assert!(renewal.unheld.is_empty(), "all held: {renewal:?}");
    // `b` holds none of them: naming them renews nothing and reports nothing.
    assert_eq!(
        b.renew_leases(&[], &a_runs).await.unwrap(),
        stormhook_storage::Renewal::default()
    );

    // `a` renews for two leases: nothing is orphaned.
    for _ in 0..6 {
        tokio::time::sleep(lease / 3).await;
        a.renew_leases(&[], &a_runs).await.unwrap();
        assert!(
            b.orphaned_executions(ExecutionStatus::Running)
                .await
                .unwrap()
                .is_empty()
        );
    }
    // `a` loses track of the running one (as when its claim's answer is lost): half a lease
    // after its last renewal, `a`'s renewal reports it as unheld, and only it.
    tokio::time::sleep(lease / 2 + Duration::from_millis(100)).await;
    let renewal = a
        .renew_leases(&[], std::slice::from_ref(&canceled.id))
        .await
        .unwrap();
    assert_eq!(
        renewal.unheld,
        std::slice::from_ref(&running.id),
        "{renewal:?}"
    );
    // `a` dies (the canceling one was renewed last, just above). Right after its lease ran
    // out it is not an orphan yet (a node cut off as long as everyone gets half a lease more
    // to renew)...
    tokio::time::sleep(lease + Duration::from_millis(50)).await;
    assert!(
        b.orphaned_executions(ExecutionStatus::Canceling)
            .await
            .unwrap()
            .is_empty()
    );
    // ...then both are, each claimed by the reaper that found it; the `requested` one still
    // is not.
    tokio::time::sleep(lease / 2 + Duration::from_millis(100)).await;
    let ids_of = |v: Vec<Execution>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    let c = schema.node("c", lease, &dir).await;
    assert_eq!(
        ids_of(
            b.orphaned_executions(ExecutionStatus::Running)
                .await
                .unwrap()
        ),
        std::slice::from_ref(&running.id)
    );
    // Claimed by `b`'s reaper: another reaper does not get it too.
    assert!(
        c.orphaned_executions(ExecutionStatus::Running)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ids_of(
            b.orphaned_executions(ExecutionStatus::Canceling)
                .await
                .unwrap()
        ),
        std::slice::from_ref(&canceled.id)
    );
    assert!(
        b.orphaned_executions(ExecutionStatus::Requested)
            .await
            .unwrap()
            .is_empty()
    );

    // `b` settles the running one (abandoned): released, no longer an orphan. `a` (alive
    // after all, its lease long gone) cannot overwrite that with a late result.
    let mut abandoned = claimed.iter().find(|e| e.id == running.id).unwrap().clone();
    abandoned.status = ExecutionStatus::Abandoned;
    abandoned.end_timestamp = Some(ids::now());
    let mut late = abandoned.clone();
    late.status = ExecutionStatus::Succeeded;
    assert!(
        !a.update_execution(&late, &[ExecutionStatus::Running])
            .await
            .unwrap()
    );
    assert!(
        b.update_execution(&abandoned, &[ExecutionStatus::Running])
            .await
            .unwrap()
    );
    assert!(
        b.orphaned_executions(ExecutionStatus::Running)
            .await
            .unwrap()
            .is_empty()
    );
    let (owner, lease_until): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT owner, lease_until::text FROM executions WHERE id = $1")
            .bind(&running.id)
            .fetch_one(&mut schema.conn().await)
            .await
            .unwrap();
    assert_eq!((owner, lease_until), (None, None));
}

/// A change published on one node reaches every node's `changes()` (its own too); the store
/// announces its own writes: rules, credentials, cancels and new work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_every_node() {
    let schema = schema_or_skip!(changes_reach_every_node);
    let dir = tempfile::tempdir().unwrap();
    let a = schema.node("a", Duration::from_secs(60), &dir).await;
    let b = schema.node("b", Duration::from_secs(60), &dir).await;
    let mut on_a = a.changes().unwrap();
    let mut on_b = b.changes().unwrap();

    // Notifications are per database: a change only this test sends.
    let mine = Change::Cancel(format!("from-a-{}", schema.name));
    a.publish(mine.clone()).await.unwrap();
    expect_change(&mut on_b, mine.clone()).await;
    expect_change(&mut on_a, mine).await;

    let rule = StoredRule {
        id: ids::object_id(),
        reference: "p.r".into(),
        pack: "p".into(),
        name: "r".into(),
        document: json!({"ref": "p.r"}),
        created_by: "stanley".into(),
    };
    a.insert_rule(&rule).await.unwrap();
    expect_change(&mut on_b, Change::Rules).await;
    expect_change(&mut on_a, Change::Rules).await;
    // A second rule with the ref: a conflict naming the first, and no change.
    match a
        .insert_rule(&StoredRule {
            id: ids::object_id(),
            ..rule.clone()
        })
        .await
    {
        Err(stormhook_storage::StorageError::Conflict { existing_id, .. }) => {
            assert_eq!(existing_id, Some(rule.id.clone()));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }

    b.commit_events(&[event(0)]).await.unwrap();
    expect_change(&mut on_a, Change::Work).await;

    let key = stormhook_storage::ApiKey {
        id: ids::object_id(),
        user: "u".into(),
        key_hash: "h".into(),
        metadata: json!({}),
        created_at: ids::now(),
        enabled: true,
    };
    a.insert_api_key(&key).await.unwrap();
    assert!(b.delete_api_key(&key.id).await.unwrap());
    expect_change(&mut on_a, Change::Credentials).await;

    let mut execution = requested(0);
    a.insert_execution(&execution, None).await.unwrap();
    expect_change(&mut on_b, Change::Work).await;
    execution.status = ExecutionStatus::Canceling;
    assert!(b.update_execution(&execution, &[]).await.unwrap());
    expect_change(&mut on_a, Change::Cancel(execution.id.clone())).await;
}

/// When another node's connection (here: the test's) holds the purge lock, a purge deletes
/// nothing and returns 0 at once; once it is released, the purge goes ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_at_a_time_purges() {
    let schema = schema_or_skip!(one_node_at_a_time_purges);
    let dir = tempfile::tempdir().unwrap();
    let a = schema.node("a", Duration::from_secs(60), &dir).await;
    let mut old = event(0);
    old.instances[0].occurrence_time = "2020-01-01T00:00:00.000000Z".into();
    old.instances[0].status = InstanceStatus::Processed;
    a.commit_events(&[old]).await.unwrap();
    let cut = "2021-01-01T00:00:00.000000Z";

    let mut other = schema.conn().await;
    let mut tx = other.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))")
        .bind(PURGE_LOCK)
        .execute(&mut *tx)
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(
        a.purge(Retained::TriggerInstances, cut, 10).await.unwrap(),
        0
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "it did not wait"
    );
    tx.commit().await.unwrap();
    assert_eq!(
        a.purge(Retained::TriggerInstances, cut, 10).await.unwrap(),
        1
    );
}

/// Nodes starting at once on a new schema both apply the migrations without error (sqlx's
/// advisory lock serializes them), each migration once; a later start applies nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_may_start_together_on_a_fresh_schema() {
    let schema = schema_or_skip!(nodes_may_start_together_on_a_fresh_schema);
    let dir = tempfile::tempdir().unwrap();
    let options = |node: &str| {
        PgOptions::new(
            node,
            dir.path()
                .join(stormhook_storage::sqlite::DATASTORE_KEY_FILE),
        )
    };
    let (a, b, c) = tokio::join!(
        PgStore::connect(&schema.url, options("a")),
        PgStore::connect(&schema.url, options("b")),
        PgStore::connect(&schema.url, options("c")),
    );
    let (a, b, _c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert_eq!((a.node_id(), b.node_id()), ("a", "b"));
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut schema.conn().await)
            .await
            .unwrap();
    // Every migration in `migrations/postgres`, once each.
    let mut versions: Vec<(i64, bool)> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
            .unwrap()
            .filter_map(|entry| {
                let name = entry.unwrap().file_name().into_string().unwrap();
                name.split('_').next()?.parse().ok().map(|v| (v, true))
            })
            .collect();
    versions.sort_unstable();
    assert_eq!(applied, versions);
    PgStore::connect(&schema.url, options("d")).await.unwrap();
    a.commit_events(&[event(0)]).await.unwrap();
    assert_eq!(b.pending_after(0, 10).await.unwrap().len(), 1);
}

/// A database that cannot be reached fails the connect within seconds, as unavailable (the
/// server answers 503 and retries), rather than hanging. Needs no test database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_fails_fast_as_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let err = PgStore::connect(
        "postgres://postgres@127.0.0.1:1/test",
        PgOptions::new("a", dir.path().join("key.json")),
    )
    .await
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(err.is_unavailable(), "{err:?}");
    assert!(err.cause().contains("cannot be reached"), "{}", err.cause());
}

/// When the server ends a node's connections (a restart, a failover, an administrator), the
/// next calls fail as unavailable or succeed on a new connection, and the change listener
/// connects again by itself: subscribers are told to refresh, and later changes arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_recovers_when_its_connections_are_killed() {
    let schema = schema_or_skip!(a_node_recovers_when_its_connections_are_killed);
    let dir = tempfile::tempdir().unwrap();
    let a = schema.node("killed", Duration::from_secs(60), &dir).await;
    let b = schema.node("other", Duration::from_secs(60), &dir).await;
    let mut on_a = a.changes().unwrap();
    a.kv_set("k", "v").await.unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = 'stormhook killed'",
    )
    .fetch_all(&mut schema.conn().await)
    .await
    .unwrap();
    assert!(
        killed.len() >= 2,
        "the pool's and the listener's: {killed:?}"
    );
    // A call on a dead pooled connection fails as unavailable, or gets a new connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match a.kv_get("k").await {
            Ok(pair) => {
                assert_eq!(pair.unwrap().value, "v");
                break;
            }
            Err(e) => assert!(e.is_unavailable(), "{e:?}"),
        }
        assert!(Instant::now() < deadline, "no recovery within 10 s");
    }
    // The listener connects again by itself; until it has, changes are lost (a notification
    // is sent to the sessions listening at the time). Notifications are per database, so
    // other tests' changes arrive too: probe with changes only this test sends.
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    'probing: for n in 0.. {
        let probe = Change::Cancel(format!("probe-{}-{n}", schema.name));
        b.publish(probe.clone()).await.unwrap();
        let wait = Instant::now() + Duration::from_millis(200);
        while let Ok(Ok(change)) =
            tokio::time::timeout(wait.saturating_duration_since(Instant::now()), on_a.recv()).await
        {
            if change == probe {
                break 'probing;
            }
            seen.push(change);
        }
        assert!(
            Instant::now() < deadline,
            "the listener did not reconnect within 10 s"
        );
    }
    // Having missed what was sent meanwhile, it told its subscribers to refresh.
    for refresh in [Change::Rules, Change::Credentials, Change::Work] {
        assert!(seen.contains(&refresh), "{refresh:?} not in {seen:?}");
    }
}
