//! Several `stormhook serve` nodes on one PostgreSQL store (issue 15), end to end on the real
//! binary: three nodes on a fresh schema of `STORMHOOK_TEST_DATABASE_URL` (each test is skipped,
//! saying so, without it), each with its own data directory and packs folder, `--lease-secs 3`.
//!
//! - Three nodes started at the same moment on an empty schema all come up.
//! - Webhooks spread over the nodes are each enforced once per rule and run once, by more than
//!   one node.
//! - A node killed with SIGKILL mid-run: the others take its trigger instances over after its
//!   lease, its running executions become `abandoned` (not run again), nothing acknowledged is
//!   lost or enforced twice.
//! - A rule created or deleted through one node changes the others' webhooks within a second.
//! - A cancel sent to one node stops the command running on another.
//! - An API key deleted through one node stops working on the others within the credential
//!   cache's lifetime.
//!
//! The tests run one at a time (each starts three nodes on a 2-core machine and measures
//! timings).

mod common;
#[path = "common/e2e.rs"]
mod e2e;
#[path = "common/pg.rs"]
mod pg;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Serve;
use e2e::{Api, Audit};
use serde_json::{Value, json};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `--lease-secs` of every node.
const LEASE_SECS: u64 = 3;
/// Node ids.
const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];

/// Three nodes on one fresh schema.
struct Cluster {
    root: tempfile::TempDir,
    /// `None` once killed.
    nodes: Vec<Option<Serve>>,
    /// The logs of the killed nodes.
    dead: Vec<(usize, String)>,
    urls: Vec<String>,
    api: Api,
}

impl Cluster {
    /// Starts three nodes on a fresh schema, node-a first (it migrates the schema and
    /// registers the system trigger types), then node-b and node-c at once; `None` when the
    /// test is skipped. (`three_nodes_started_at_once_on_a_fresh_schema_all_come_up` starts
    /// all three at once.)
    async fn start(test: &str) -> Option<Self> {
        let database_url = pg::fresh_schema_url(test).await?;
        let root = tempfile::tempdir().unwrap();
        // One key for all: the store is shared.
        let key = e2e::offline_key(&root.path().join(NODES[0]), Some(&database_url));
        let mut nodes = start_nodes(root.path(), &database_url, &[0]).await;
        nodes.extend(start_nodes(root.path(), &database_url, &[1, 2]).await);
        let nodes = nodes
            .into_iter()
            .map(|(node, started)| {
                started.unwrap_or_else(|e| panic!("{} did not start: {e}", NODES[node]))
            })
            .collect::<Vec<_>>();
        let urls = nodes.iter().map(|n| n.url.clone()).collect();
        Some(Self {
            root,
            nodes: nodes.into_iter().map(Some).collect(),
            dead: Vec::new(),
            urls,
            api: Api::new(&key),
        })
    }

    fn url(&self, node: usize) -> &str {
        &self.urls[node]
    }

    /// The tails of every node's log (the killed ones' too).
    fn logs(&self) -> String {
        let mut named: Vec<(&str, String)> = self
            .dead
            .iter()
            .map(|(i, log)| (NODES[*i], log.clone()))
            .collect();
        for (i, node) in self.nodes.iter().enumerate() {
            if let Some(node) = node {
                named.push((NODES[i], node.log()));
            }
        }
        e2e::logs_of(named)
    }

    /// SIGKILLs a node.
    fn kill(&mut self, node: usize) {
        let mut serve = self.nodes[node].take().expect("the node is up");
        serve.child.kill().unwrap(); // SIGKILL
        serve.child.wait().unwrap();
        self.dead.push((node, serve.stop()));
    }

    /// Waits (at most `limit`) until the backlog is done, seen through `node`.
    async fn drain(&self, node: usize, limit: Duration, what: &str) -> Duration {
        e2e::wait_for(
            limit,
            Duration::from_millis(200),
            what,
            || self.logs(),
            || e2e::drained(&self.api, self.url(node)),
        )
        .await
        .1
    }

    async fn execution(&self, node: usize, id: &str) -> Value {
        match self
            .api
            .get(self.url(node), &format!("/api/v1/executions/{id}"))
            .await
        {
            Ok((200, e)) => e,
            other => panic!(
                "GET execution {id} on {}: {other:?}{}",
                NODES[node],
                self.logs()
            ),
        }
    }
}

/// Numbered webhooks posted by `senders` clients to `hook`, round robin over the live nodes.
struct Flow {
    acked: Arc<Mutex<HashSet<u64>>>,
    /// Non-202 answers by status, and transport errors (`0`).
    other: Arc<Mutex<BTreeMap<u16, usize>>>,
    down: Arc<Vec<AtomicBool>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Flow {
    /// Starts `senders` clients, together posting `total` webhooks (`None`: until stopped),
    /// each waiting `pause` after each request.
    fn start(
        cluster: &Cluster,
        hook: &str,
        senders: usize,
        total: Option<u64>,
        pause: Duration,
    ) -> Self {
        let flow = Self {
            acked: Arc::default(),
            other: Arc::default(),
            down: Arc::new(NODES.iter().map(|_| AtomicBool::new(false)).collect()),
            stop: Arc::default(),
            tasks: Vec::new(),
        };
        let counter = Arc::new(AtomicU64::new(0));
        let tasks = (0..senders)
            .map(|_| {
                let (api, urls, hook) =
                    (cluster.api.clone(), cluster.urls.clone(), hook.to_owned());
                let (acked, other, down, stop, counter) = (
                    Arc::clone(&flow.acked),
                    Arc::clone(&flow.other),
                    Arc::clone(&flow.down),
                    Arc::clone(&flow.stop),
                    Arc::clone(&counter),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        if total.is_some_and(|t| n >= t) {
                            return;
                        }
                        // Round robin, skipping the nodes known to be down.
                        let node = (0..urls.len())
                            .map(|k| (n as usize + k) % urls.len())
                            .find(|&i| !down[i].load(Ordering::Relaxed))
                            .expect("a node is up");
                        let body = json!({"n": n});
                        let path = format!("/api/v1/webhooks/{hook}");
                        match api.post(&urls[node], &path, &body).await {
                            Ok((202, _)) => {
                                acked.lock().unwrap().insert(n);
                            }
                            Ok((status, _)) => {
                                *other.lock().unwrap().entry(status).or_default() += 1;
                            }
                            Err(_) => *other.lock().unwrap().entry(0).or_default() += 1,
                        }
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                })
            })
            .collect();
        Self { tasks, ..flow }
    }

    /// Stops the clients, waits for them, and returns the acknowledged numbers and the other
    /// answers.
    async fn finish(self) -> (HashSet<u64>, BTreeMap<u16, usize>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        let acked = self.acked.lock().unwrap().clone();
        let other = self.other.lock().unwrap().clone();
        (acked, other)
    }
}

/// a. Webhooks spread over the three nodes: each acknowledged one is enforced exactly once per
/// rule (two rules on the hook) and each enforcement has exactly one execution; more than one
/// node ran executions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_spread_over_three_nodes_are_enforced_and_run_exactly_once() {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::start("cluster spread").await else {
        return;
    };
    const TOTAL: u64 = 3000;
    for name in ["spread_1", "spread_2"] {
        e2e::create_rule(
            &cluster.api,
            cluster.url(0),
            &e2e::webhook_rule(name, "spread", "core.noop", json!({})),
        )
        .await;
    }
    // Registered on every node before the flow starts (asked with GET, which stores nothing).
    for node in 0..NODES.len() {
        wait_registered(&cluster, node, "spread").await;
    }
    let started = Instant::now();
    let flow = Flow::start(&cluster, "spread", 12, Some(TOTAL), Duration::ZERO);
    for task in &flow.tasks {
        while !task.is_finished() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let sent = started.elapsed();
    let (acked, other) = flow.finish().await;
    assert!(
        other.is_empty() && acked.len() as u64 == TOTAL,
        "every webhook is acknowledged: {} of {TOTAL}, other answers {other:?}{}",
        acked.len(),
        cluster.logs()
    );
    let drain = cluster
        .drain(
            1,
            Duration::from_secs(180),
            "the backlog of the spread webhooks drains",
        )
        .await;
    let snap = e2e::snapshot(&cluster.api, cluster.url(2))
        .await
        .unwrap_or_else(|e| panic!("{e}{}", cluster.logs()));
    let audit = Audit::of(&acked, &["e2e.spread_1", "e2e.spread_2"], &snap);
    eprintln!(
        "cluster spread: {TOTAL} webhooks acknowledged in {:.1} s over 3 nodes, drained {:.1} s later; {}",
        sent.as_secs_f64(),
        drain.as_secs_f64(),
        audit.summary()
    );
    audit.assert_exact(&cluster.logs());
    assert_eq!(
        audit.enforcements,
        2 * acked.len(),
        "two enforcements a webhook, none other{}",
        cluster.logs()
    );
    assert_eq!(
        audit.executions, audit.enforcements,
        "one execution an enforcement"
    );
    let workers: Vec<_> = audit
        .by_node
        .keys()
        .filter(|n| NODES.contains(&n.as_str()))
        .collect();
    assert!(
        workers.len() > 1,
        "more than one node ran executions: {:?}{}",
        audit.by_node,
        cluster.logs()
    );
}

/// b. A node SIGKILLed while webhooks flow and its commands run: the other two finish its
/// trigger instances within the lease plus a few seconds, its running executions become
/// `abandoned` (their commands are not started again), nothing acknowledged is lost and
/// nothing is enforced twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_work_is_taken_over_after_its_lease_and_its_running_executions_abandoned() {
    let _serial = SERIAL.lock().await;
    let Some(mut cluster) = Cluster::start("cluster takeover").await else {
        return;
    };
    // Each command appends its webhook's number when it starts, then runs for half a second.
    let marker = cluster.root.path().join("started");
    std::fs::write(&marker, "").unwrap();
    let cmd = format!(
        "echo {{{{ trigger.body.n }}}} >> {}; sleep 0.5",
        marker.display()
    );
    e2e::create_rule(
        &cluster.api,
        cluster.url(0),
        &e2e::webhook_rule("takeover", "takeover", "core.local", json!({"cmd": cmd})),
    )
    .await;
    for node in 0..NODES.len() {
        wait_registered(&cluster, node, "takeover").await;
    }
    let flow = Flow::start(&cluster, "takeover", 4, None, Duration::from_millis(80));
    // Kill node-b once the flow has run a while and it has commands running.
    let victim = 1;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (running, _) = e2e::wait_for(
        Duration::from_secs(20),
        Duration::from_millis(20),
        "node-b runs at least 3 commands",
        || cluster.logs(),
        || async {
            let running = cluster
                .api
                .list(
                    cluster.url(0),
                    "/api/v1/executions?limit=-1&status=running&include_attributes=status,liveaction",
                )
                .await?;
            let on_victim = running
                .iter()
                .filter(|x| e2e::node_of(x) == Some(NODES[victim]))
                .count();
            if on_victim >= 3 {
                Ok(on_victim)
            } else {
                Err(format!("{on_victim} running on node-b, {} in all", running.len()))
            }
        },
    )
    .await;
    flow.down[victim].store(true, Ordering::Relaxed);
    cluster.kill(victim);
    let killed = Instant::now();
    let (acked, other) = flow.finish().await;

    // Its running executions become `abandoned`.
    e2e::wait_for(
        Duration::from_secs(LEASE_SECS + 10),
        Duration::from_millis(100),
        "node-b's running executions are no longer running",
        || cluster.logs(),
        || async {
            let unfinished = cluster
                .api
                .list(
                    cluster.url(0),
                    &format!(
                        "/api/v1/executions?limit=-1&include_attributes=status,liveaction&status={}",
                        e2e::UNFINISHED
                    ),
                )
                .await?;
            let left = unfinished
                .iter()
                .filter(|x| e2e::node_of(x) == Some(NODES[victim]))
                .count();
            if left == 0 { Ok(()) } else { Err(format!("{left} of node-b's unfinished")) }
        },
    )
    .await;
    let abandoned_after = killed.elapsed();
    // And the rest of its work is taken over.
    cluster
        .drain(
            0,
            Duration::from_secs(LEASE_SECS + 15),
            "the survivors finish node-b's trigger instances and executions",
        )
        .await;
    let drained_after = killed.elapsed();
    // Let any command still starting write its line.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let snap = e2e::snapshot(&cluster.api, cluster.url(2))
        .await
        .unwrap_or_else(|e| panic!("{e}{}", cluster.logs()));
    let audit = Audit::of(&acked, &["e2e.takeover"], &snap);
    let started_lines = std::fs::read_to_string(&marker).unwrap();
    let mut starts: HashMap<u64, usize> = HashMap::new();
    for line in started_lines.lines() {
        let n: u64 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("marker line {line:?}"));
        *starts.entry(n).or_default() += 1;
    }
    let abandoned: Vec<&Value> = snap
        .executions
        .iter()
        .filter(|x| x["status"] == "abandoned")
        .collect();
    eprintln!(
        "cluster takeover: node-b killed with {running} commands running (lease {LEASE_SECS} s); \
         its executions settled {:.1} s after the kill ({} abandoned), backlog drained {:.1} s \
         after; acked {}, lost {}, duplicate {}, non-202 answers {other:?}; {}",
        abandoned_after.as_secs_f64(),
        abandoned.len(),
        drained_after.as_secs_f64(),
        audit.acked,
        audit.lost.len(),
        audit.duplicate.len(),
        audit.summary()
    );
    audit.assert_exact(&cluster.logs());
    assert!(
        abandoned_after <= Duration::from_secs(LEASE_SECS + 5),
        "node-b's running executions are abandoned within its lease ({LEASE_SECS} s) plus 5 s: \
         took {abandoned_after:?}{}",
        cluster.logs()
    );
    assert!(
        drained_after <= Duration::from_secs(LEASE_SECS + 8),
        "node-b's trigger instances are finished within its lease ({LEASE_SECS} s) plus 8 s: \
         took {drained_after:?}{}",
        cluster.logs()
    );
    assert!(
        !abandoned.is_empty(),
        "node-b had {running} commands running at the kill; none is abandoned: {:?}{}",
        audit.execution_statuses,
        cluster.logs()
    );
    let wrong: Vec<_> = abandoned
        .iter()
        .filter(|x| e2e::node_of(x) != Some(NODES[victim]))
        .collect();
    assert!(
        wrong.is_empty(),
        "only node-b's executions are abandoned: {wrong:?}"
    );
    // Every command started at most once; one that never started is an abandoned one (killed
    // between its claim and its start).
    let twice: Vec<_> = starts.iter().filter(|&(_, &c)| c > 1).collect();
    assert!(
        twice.is_empty(),
        "commands started twice (webhook number, starts): {twice:?}"
    );
    let abandoned_numbers: HashSet<u64> = abandoned
        .iter()
        .filter_map(|x| x["trigger_instance"]["payload"]["body"]["n"].as_u64())
        .collect();
    let never: Vec<_> = acked
        .iter()
        .filter(|n| !starts.contains_key(n) && !abandoned_numbers.contains(n))
        .collect();
    assert!(
        never.is_empty(),
        "acknowledged webhooks whose command never started and was not abandoned: {never:?}{}",
        cluster.logs()
    );
    // Requests in flight to node-b at the kill fail; none is refused otherwise.
    assert!(
        other.keys().all(|&s| s == 0),
        "unexpected answers: {other:?}{}",
        cluster.logs()
    );
}

/// c. A rule created through node-a registers its webhook on node-b within a second, and its
/// deletion through node-a unregisters it there within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_created_or_deleted_on_one_node_changes_the_others_webhooks_within_a_second() {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::start("cluster rule propagation").await else {
        return;
    };
    let hook = format!("propagated-{}", std::process::id());
    for node in 0..NODES.len() {
        wait_hook(&cluster, node, &hook, "POST", 404, Duration::from_secs(1)).await;
    }
    let created = Instant::now();
    let id = e2e::create_rule(
        &cluster.api,
        cluster.url(0),
        &e2e::webhook_rule("propagated", &hook, "core.noop", json!({})),
    )
    .await;
    let create_call = created.elapsed();
    wait_hook(&cluster, 1, &hook, "POST", 202, Duration::from_secs(5)).await;
    let on_b = created.elapsed();
    wait_hook(&cluster, 2, &hook, "POST", 202, Duration::from_secs(5)).await;
    let on_c = created.elapsed();

    let deleted = Instant::now();
    match cluster
        .api
        .delete(cluster.url(0), &format!("/api/v1/rules/{id}"))
        .await
    {
        Ok((204, _)) => {}
        other => panic!("deleting the rule: {other:?}{}", cluster.logs()),
    }
    let delete_call = deleted.elapsed();
    wait_hook(&cluster, 1, &hook, "POST", 404, Duration::from_secs(5)).await;
    let off_b = deleted.elapsed();
    eprintln!(
        "cluster rule propagation: created on node-a ({} ms), answering on node-b {} ms after \
         the create was sent (node-c by {} ms); deleted on node-a ({} ms), 404 on node-b {} ms \
         after the delete was sent",
        create_call.as_millis(),
        on_b.as_millis(),
        on_c.as_millis(),
        delete_call.as_millis(),
        off_b.as_millis()
    );
    assert!(
        on_b < Duration::from_millis(1500),
        "node-b registers a rule created on node-a within a second (1.5 s allowed): took {on_b:?}{}",
        cluster.logs()
    );
    assert!(
        off_b < Duration::from_millis(1500),
        "node-b unregisters a rule deleted on node-a within a second (1.5 s allowed): took {off_b:?}{}",
        cluster.logs()
    );
}

/// d. A cancel sent to one node stops the command running on another: the execution becomes
/// `canceled` and its process is gone within a few seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_sent_to_one_node_stops_the_execution_running_on_another() {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::start("cluster cancel").await else {
        return;
    };
    let pidfile = cluster.root.path().join("sleep.pid");
    // `exec`: the pid written is the sleep's.
    let cmd = format!("echo $$ > {}; exec sleep 30", pidfile.display());
    let (id, via) = match cluster
        .api
        .post(
            cluster.url(2),
            "/api/v1/executions",
            &json!({"action": "core.local", "parameters": {"cmd": cmd, "timeout": 120}}),
        )
        .await
    {
        Ok((201, e)) => (e["id"].as_str().unwrap().to_owned(), 2),
        other => panic!(
            "requesting the execution on node-c: {other:?}{}",
            cluster.logs()
        ),
    };
    let ((runner, pid), _) = e2e::wait_for(
        Duration::from_secs(20),
        Duration::from_millis(50),
        "the sleep runs and writes its pid",
        || cluster.logs(),
        || async {
            let e = cluster.execution(via, &id).await;
            let pid = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok());
            match (e["status"].as_str(), e2e::node_of(&e), pid) {
                (Some("running"), Some(node), Some(pid)) => Ok((node.to_owned(), pid)),
                (status, node, pid) => {
                    Err(format!("status {status:?}, node {node:?}, pid {pid:?}"))
                }
            }
        },
    )
    .await;
    let runner = NODES
        .iter()
        .position(|n| *n == runner)
        .unwrap_or_else(|| panic!("runner_info.node {runner:?} is none of {NODES:?}"));
    // node-b, unless node-b runs it.
    let canceler = if runner == 1 { 0 } else { 1 };
    let asked = Instant::now();
    let answer = match cluster
        .api
        .delete(cluster.url(canceler), &format!("/api/v1/executions/{id}"))
        .await
    {
        Ok((200, e)) => e,
        other => panic!("cancel on {}: {other:?}{}", NODES[canceler], cluster.logs()),
    };
    assert!(
        matches!(answer["status"].as_str(), Some("canceling" | "canceled")),
        "the cancel answers canceling (or canceled): {answer}"
    );
    e2e::wait_for(
        Duration::from_secs(5),
        Duration::from_millis(20),
        "the execution is canceled within 5 s of a cancel sent to another node",
        || cluster.logs(),
        || async {
            let e = cluster.execution(canceler, &id).await;
            match e["status"].as_str() {
                Some("canceled") => Ok(()),
                other => Err(format!("status {other:?}")),
            }
        },
    )
    .await;
    let canceled = asked.elapsed();
    let (state, _) = e2e::wait_for(
        Duration::from_secs(5),
        Duration::from_millis(20),
        "the canceled command's process is gone",
        || cluster.logs(),
        || async {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => Ok("gone"),
                // Killed, not yet reaped by its node.
                Ok(stat)
                    if stat
                        .rsplit(')')
                        .next()
                        .is_some_and(|s| s.trim_start().starts_with('Z')) =>
                {
                    Ok("a zombie")
                }
                Ok(stat) => Err(format!("/proc/{pid}/stat: {stat}")),
            }
        },
    )
    .await;
    let gone = asked.elapsed();
    eprintln!(
        "cluster cancel: execution run by {}, cancel sent to {} (answer {}), canceled {} ms \
         after, process {pid} {state} {} ms after",
        NODES[runner],
        NODES[canceler],
        answer["status"],
        canceled.as_millis(),
        gone.as_millis(),
    );
}

/// e. An API key deleted through node-a is refused by node-b within the credential cache's
/// lifetime (5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_deleted_on_one_node_is_refused_by_the_others_within_the_cache_lifetime() {
    let _serial = SERIAL.lock().await;
    let Some(cluster) = Cluster::start("cluster key deletion").await else {
        return;
    };
    let (key_id, key) = match cluster
        .api
        .post(cluster.url(0), "/api/v1/apikeys", &json!({}))
        .await
    {
        Ok((201, k)) => (
            k["id"].as_str().unwrap().to_owned(),
            k["key"].as_str().unwrap().to_owned(),
        ),
        other => panic!("creating a key on node-a: {other:?}{}", cluster.logs()),
    };
    let with_key = Api::new(&key);
    let probe = |node: usize| {
        let (with_key, url) = (with_key.clone(), cluster.url(node).to_owned());
        async move {
            with_key
                .get(&url, "/api/v1/executions?limit=1")
                .await
                .map(|(status, _)| status)
        }
    };
    // node-b accepts it (and caches it).
    assert_eq!(
        probe(1).await,
        Ok(200),
        "node-b accepts a key made on node-a"
    );
    let deleted = Instant::now();
    match cluster
        .api
        .delete(cluster.url(0), &format!("/api/v1/apikeys/{key_id}"))
        .await
    {
        Ok((204, _)) => {}
        other => panic!("deleting the key on node-a: {other:?}{}", cluster.logs()),
    }
    assert_eq!(
        probe(0).await,
        Ok(401),
        "node-a refuses the key it deleted at once"
    );
    e2e::wait_for(
        Duration::from_secs(6),
        Duration::from_millis(50),
        "node-b refuses a key deleted on node-a within the credential cache lifetime (5 s; 6 s allowed)",
        || cluster.logs(),
        || async {
            match probe(1).await {
                Ok(401) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    eprintln!(
        "cluster key deletion: node-b refuses the key {} ms after the delete on node-a was sent \
         (credential cache lifetime 5 s)",
        deleted.elapsed().as_millis()
    );
}

/// Starts the nodes `which` (indexes in [`NODES`]) at once on `database_url`, each with its
/// own data directory and packs folder under `root`; each node's `Serve`, or why it did not
/// start (its log).
async fn start_nodes(
    root: &std::path::Path,
    database_url: &str,
    which: &[usize],
) -> Vec<(usize, Result<Serve, String>)> {
    let starting: Vec<_> = which
        .iter()
        .map(|&node| {
            let id = NODES[node];
            let data = root.join(id);
            let packs = e2e::empty_packs(root, &format!("{id}-packs"));
            let (packs, lease) = (packs.display().to_string(), LEASE_SECS.to_string());
            let args: [&str; 9] = [
                "--no-watch",
                "--packs",
                &packs,
                "--database-url",
                database_url,
                "--node-id",
                id,
                "--lease-secs",
                &lease,
            ];
            let extra: Vec<String> = args.map(str::to_owned).into();
            (
                node,
                tokio::spawn(async move { e2e::start(&data, &extra).await }),
            )
        })
        .collect();
    let mut started = Vec::new();
    for (node, task) in starting {
        // `spawn_serve` panics with the log when the node does not start.
        let result = task.await.map_err(|e| match e.try_into_panic() {
            Ok(panic) => panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "a panic".into()),
            Err(e) => e.to_string(),
        });
        started.push((node, result));
    }
    started
}

/// Three nodes started at the same moment on a fresh, empty schema (a cluster deployed at
/// once): each comes up (migrating and registering the system types concurrently), and a key
/// created offline afterwards works on all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_started_at_once_on_a_fresh_schema_all_come_up() {
    let _serial = SERIAL.lock().await;
    let Some(database_url) = pg::fresh_schema_url("cluster started at once").await else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let started = start_nodes(root.path(), &database_url, &[0, 1, 2]).await;
    let failed: Vec<String> = started
        .iter()
        .filter_map(|(node, r)| r.as_ref().err().map(|e| format!("\n{}: {e}", NODES[*node])))
        .collect();
    assert!(
        failed.is_empty(),
        "nodes started at once on a fresh schema did not all come up:{}",
        failed.concat()
    );
    let key = e2e::offline_key(&root.path().join(NODES[0]), Some(&database_url));
    let api = Api::new(&key);
    for (node, serve) in &started {
        let serve = serve.as_ref().unwrap();
        let answer = api.get(&serve.url, "/api/v1/rules").await;
        assert!(
            matches!(answer, Ok((200, _))),
            "{} accepts the key: {answer:?}{}",
            NODES[*node],
            e2e::logs_of([(NODES[*node], serve.log())])
        );
    }
}

/// Waits (at most 5 s) until `GET /api/v1/webhooks/{hook}` on `node` answers 200: the hook is
/// registered there (a GET stores no trigger instance, unlike a probing POST).
async fn wait_registered(cluster: &Cluster, node: usize, hook: &str) {
    wait_hook(cluster, node, hook, "GET", 200, Duration::from_secs(5)).await;
}

/// Sends `method` (`GET` or `POST`) to `/api/v1/webhooks/{hook}` on `node` until it answers
/// `status` (at most `limit`); returns how long it took.
async fn wait_hook(
    cluster: &Cluster,
    node: usize,
    hook: &str,
    method: &str,
    status: u16,
    limit: Duration,
) -> Duration {
    let path = format!("/api/v1/webhooks/{hook}");
    e2e::wait_for(
        limit,
        Duration::from_millis(10),
        &format!("{method} {path} on {} answers {status}", NODES[node]),
        || cluster.logs(),
        || async {
            let url = cluster.url(node);
            let answer = if method == "GET" {
                cluster.api.get(url, &path).await
            } else {
                cluster.api.post(url, &path, &json!({})).await
            };
            match answer {
                Ok((s, _)) if s == status => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
    .1
}
