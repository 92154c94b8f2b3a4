//! End-to-end helpers for the tests that run several `stormhook serve` processes over one store
//! (`crash_cycles.rs`: one node killed and restarted again and again; `cluster.rs`: three nodes
//! on one PostgreSQL schema): starting a node off the test's runtime, an API client, bounded
//! waits whose failure shows the nodes' logs, API rules, draining the backlog, and the audit of
//! what was acknowledged against what the store holds.
//!
//! Include it after `mod common;` with `#[path = "common/e2e.rs"] mod e2e;`.

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{self, Serve};

/// The statuses of an execution that has not finished.
pub const UNFINISHED: &str = "requested,delayed,scheduled,running,canceling";

/// Starts `stormhook serve` over `data` with `extra` arguments on a blocking thread (starting
/// waits for the "listening on" line, which must not stall the test's runtime).
pub async fn start(data: &Path, extra: &[String]) -> Serve {
    let (data, extra) = (data.to_owned(), extra.to_vec());
    tokio::task::spawn_blocking(move || {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        common::spawn_serve(&data, &extra)
    })
    .await
    // `spawn_serve`'s own panic (with the log) when the node does not start.
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// An empty packs folder under `root` named `name` (no example pack, so no component to
/// compile and no rule but the test's).
pub fn empty_packs(root: &Path, name: &str) -> PathBuf {
    let packs = root.join(name);
    std::fs::create_dir_all(&packs).unwrap();
    packs
}

/// An API key created offline (`stormhook apikey create -k`) on the store of `data`, or on the
/// PostgreSQL database `database_url` (then valid on every node sharing it).
pub fn offline_key(data: &Path, database_url: Option<&str>) -> String {
    let mut cmd = common::stormhook();
    cmd.args(["apikey", "create", "-k", "--data-dir"]).arg(data);
    if let Some(url) = database_url {
        cmd.args(["--database-url", url]);
    }
    let out = common::run(&mut cmd);
    let text = out.ok();
    assert_eq!(text.lines().count(), 1, "-k prints the key alone: {text:?}");
    text.trim().to_owned()
}

/// The last `lines` lines of `log`.
pub fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The tails of several logs, each under its name.
pub fn logs_of<'a>(named: impl IntoIterator<Item = (&'a str, String)>) -> String {
    named
        .into_iter()
        .map(|(name, log)| {
            format!(
                "\n===== log of {name} (last 60 lines) =====\n{}",
                tail(&log, 60)
            )
        })
        .collect()
}

/// Polls `check` every `every` until it gives `Ok`, for at most `limit`; then fails with
/// `what`, the last `Err` (the state seen) and `logs()`. Returns the value and how long it took.
pub async fn wait_for<T, F, Fut>(
    limit: Duration,
    every: Duration,
    what: &str,
    logs: impl Fn() -> String,
    mut check: F,
) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        match check().await {
            Ok(value) => return (value, started.elapsed()),
            Err(state) if started.elapsed() >= limit => {
                panic!(
                    "{what}: not within {limit:?} (last seen: {state}){}",
                    logs()
                )
            }
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}

/// An API client with a key.
#[derive(Clone)]
pub struct Api {
    /// The HTTP client.
    pub client: reqwest::Client,
    /// The `St2-Api-Key` it sends.
    pub key: String,
}

/// A status and a JSON body (`null` when there is none or it is not JSON).
pub type Answer = (u16, Value);

impl Api {
    /// A client sending `key`, each request within 30 s.
    pub fn new(key: &str) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            key: key.to_owned(),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Answer, String> {
        let resp = request
            .header("St2-Api-Key", &self.key)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// `GET base+path`.
    pub async fn get(&self, base: &str, path: &str) -> Result<Answer, String> {
        self.send(self.client.get(format!("{base}{path}"))).await
    }

    /// `POST base+path` with a JSON body.
    pub async fn post(&self, base: &str, path: &str, body: &Value) -> Result<Answer, String> {
        self.send(self.client.post(format!("{base}{path}")).json(body))
            .await
    }

    /// `DELETE base+path`.
    pub async fn delete(&self, base: &str, path: &str) -> Result<Answer, String> {
        self.send(self.client.delete(format!("{base}{path}"))).await
    }

    /// A list endpoint's items (`GET base+path`, which must answer 200 with an array).
    pub async fn list(&self, base: &str, path: &str) -> Result<Vec<Value>, String> {
        match self.get(base, path).await? {
            (200, Value::Array(items)) => Ok(items),
            (status, body) => Err(format!("GET {path}: {status} {body}")),
        }
    }
}

/// An enabled API rule `e2e.<name>` on the webhook `url` running `action` with `parameters`.
pub fn webhook_rule(name: &str, url: &str, action: &str, parameters: Value) -> Value {
    json!({
        "name": name,
        "pack": "e2e",
        "enabled": true,
        "trigger": {"type": "core.st2.webhook", "parameters": {"url": url}},
        "criteria": {},
        "action": {"ref": action, "parameters": parameters},
    })
}

/// Creates `rule` through the node at `base` and returns its id.
pub async fn create_rule(api: &Api, base: &str, rule: &Value) -> String {
    match api.post(base, "/api/v1/rules", rule).await {
        Ok((201, created)) => created["id"].as_str().expect("a rule id").to_owned(),
        other => panic!("creating the rule {rule}: {other:?}"),
    }
}

/// What the store holds, read through one node.
pub struct Snapshot {
    /// Every trigger instance.
    pub instances: Vec<Value>,
    /// Every rule enforcement.
    pub enforcements: Vec<Value>,
    /// Every execution (`status`, `rule`, `trigger_instance`, `liveaction`).
    pub executions: Vec<Value>,
}

/// Reads the instances, enforcements and executions through the node at `base`.
pub async fn snapshot(api: &Api, base: &str) -> Result<Snapshot, String> {
    Ok(Snapshot {
        instances: api.list(base, "/api/v1/triggerinstances?limit=-1").await?,
        enforcements: api.list(base, "/api/v1/ruleenforcements?limit=-1").await?,
        executions: api
            .list(
                base,
                "/api/v1/executions?limit=-1&include_attributes=status,rule,trigger_instance,liveaction",
            )
            .await?,
    })
}

/// Whether the backlog is done, seen through the node at `base`: `Ok` when no trigger instance
/// is `pending` or `processing` and no execution is unfinished, twice, half a second apart
/// (an execution recorded between the two lists stores its action trigger instance a moment
/// later, so one look can see everything done while a new instance is on its way), else what
/// is left.
pub async fn drained(api: &Api, base: &str) -> Result<(), String> {
    drained_now(api, base).await?;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    drained_now(api, base).await
}

async fn drained_now(api: &Api, base: &str) -> Result<(), String> {
    let instances = api.list(base, "/api/v1/triggerinstances?limit=-1").await?;
    let waiting = instances
        .iter()
        .filter(|i| matches!(i["status"].as_str(), Some("pending" | "processing")))
        .count();
    let unfinished = api
        .list(
            base,
            &format!("/api/v1/executions?limit=-1&include_attributes=status&status={UNFINISHED}"),
        )
        .await?
        .len();
    if waiting == 0 && unfinished == 0 {
        Ok(())
    } else {
        Err(format!(
            "{waiting} of {} trigger instances pending or processing, {unfinished} executions unfinished",
            instances.len()
        ))
    }
}

/// The node an execution ran on (`runner_info.node`, top level or in `liveaction`).
pub fn node_of(execution: &Value) -> Option<&str> {
    execution["runner_info"]["node"]
        .as_str()
        .or_else(|| execution["liveaction"]["runner_info"]["node"].as_str())
}

/// The number a test's webhook carried (`{"n": <number>}`).
pub fn number_of(instance: &Value) -> Option<u64> {
    instance["payload"]["body"]["n"].as_u64()
}

/// What was acknowledged against what the store holds.
#[derive(Debug, Default)]
pub struct Audit {
    /// Webhooks that got a 202.
    pub acked: usize,
    /// Trigger instances stored (any webhook, acknowledged or not).
    pub instances: usize,
    /// Acknowledged webhooks with no trigger instance.
    pub lost: Vec<u64>,
    /// Trigger instances whose status is not `processed`, by status.
    pub unprocessed: BTreeMap<String, usize>,
    /// Rule enforcements stored.
    pub enforcements: usize,
    /// (trigger instance, rule) pairs with more than one enforcement.
    pub duplicate: Vec<(String, String)>,
    /// (acknowledged webhook, rule) pairs with no enforcement.
    pub missing: Vec<(u64, String)>,
    /// (acknowledged webhook, rule) pairs with more than one enforcement (over all the
    /// webhook's instances).
    pub extra: Vec<(u64, String)>,
    /// Executions stored.
    pub executions: usize,
    /// Enforcements with no execution for their (trigger instance, rule).
    pub enforcements_without_execution: Vec<String>,
    /// (trigger instance, rule) pairs with more than one execution.
    pub duplicate_executions: Vec<(String, String)>,
    /// Executions by status.
    pub execution_statuses: BTreeMap<String, usize>,
    /// Executions by the node that ran them (`runner_info.node`; `-` when none is recorded).
    pub by_node: BTreeMap<String, usize>,
}

impl Audit {
    /// Counts, for `acked` webhooks matched by `rules` (their refs), what `snap` holds.
    pub fn of(acked: &HashSet<u64>, rules: &[&str], snap: &Snapshot) -> Self {
        let mut audit = Self {
            acked: acked.len(),
            instances: snap.instances.len(),
            enforcements: snap.enforcements.len(),
            executions: snap.executions.len(),
            ..Self::default()
        };
        let mut number: HashMap<&str, u64> = HashMap::new();
        let mut stored: HashSet<u64> = HashSet::new();
        for instance in &snap.instances {
            let status = instance["status"].as_str().unwrap_or("?");
            if status != "processed" {
                *audit.unprocessed.entry(status.to_owned()).or_default() += 1;
            }
            if let (Some(id), Some(n)) = (instance["id"].as_str(), number_of(instance)) {
                number.insert(id, n);
                stored.insert(n);
            }
        }
        audit.lost = acked.difference(&stored).copied().collect();
        audit.lost.sort_unstable();

        let mut per_pair: HashMap<(&str, &str), usize> = HashMap::new();
        let mut per_webhook: HashMap<(u64, &str), usize> = HashMap::new();
        for e in &snap.enforcements {
            let instance = e["trigger_instance_id"].as_str().unwrap_or_default();
            let rule = e["rule"]["ref"].as_str().unwrap_or_default();
            *per_pair.entry((instance, rule)).or_default() += 1;
            if let Some(&n) = number.get(instance) {
                *per_webhook.entry((n, rule)).or_default() += 1;
            }
        }
        audit.duplicate = per_pair
            .iter()
            .filter(|&(_, &count)| count > 1)
            .map(|(&(i, r), _)| (i.to_owned(), r.to_owned()))
            .collect();
        for &n in acked {
            for &rule in rules {
                match per_webhook.get(&(n, rule)).copied().unwrap_or(0) {
                    0 => audit.missing.push((n, rule.to_owned())),
                    1 => {}
                    _ => audit.extra.push((n, rule.to_owned())),
                }
            }
        }
        audit.missing.sort();
        audit.extra.sort();

        let mut runs: HashMap<(&str, &str), usize> = HashMap::new();
        for x in &snap.executions {
            *audit
                .execution_statuses
                .entry(x["status"].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
            *audit
                .by_node
                .entry(node_of(x).unwrap_or("-").to_owned())
                .or_default() += 1;
            if let (Some(instance), Some(rule)) = (
                x["trigger_instance"]["id"].as_str(),
                x["rule"]["ref"].as_str(),
            ) {
                *runs.entry((instance, rule)).or_default() += 1;
            }
        }
        audit.duplicate_executions = runs
            .iter()
            .filter(|&(_, &count)| count > 1)
            .map(|(&(i, r), _)| (i.to_owned(), r.to_owned()))
            .collect();
        for e in &snap.enforcements {
            let key = (
                e["trigger_instance_id"].as_str().unwrap_or_default(),
                e["rule"]["ref"].as_str().unwrap_or_default(),
            );
            if !runs.contains_key(&key) {
                audit.enforcements_without_execution.push(e.to_string());
            }
        }
        audit
    }

    /// One line of figures for the CI log.
    pub fn summary(&self) -> String {
        format!(
            "acked {}, instances {}, lost {}, unprocessed {} {:?}, enforcements {}, duplicate {}, \
             missing {}, extra {}, executions {} {:?}, enforcements without execution {}, \
             duplicate executions {}, by node {:?}",
            self.acked,
            self.instances,
            self.lost.len(),
            self.unprocessed.values().sum::<usize>(),
            self.unprocessed,
            self.enforcements,
            self.duplicate.len(),
            self.missing.len(),
            self.extra.len(),
            self.executions,
            self.execution_statuses,
            self.enforcements_without_execution.len(),
            self.duplicate_executions.len(),
            self.by_node,
        )
    }

    /// Asserts nothing acknowledged was lost, left unprocessed, enforced twice or not at all,
    /// and that each enforcement has exactly one execution; a failure shows examples, the
    /// figures and `logs`.
    pub fn assert_exact(&self, logs: &str) {
        let fail = |what: &str, examples: String| {
            panic!("{what}: {examples}\nfigures: {}{logs}", self.summary())
        };
        let first = |v: &[(String, String)]| format!("{:?}", &v[..v.len().min(5)]);
        if !self.lost.is_empty() {
            fail(
                &format!("{} acknowledged webhooks lost", self.lost.len()),
                format!("{:?}", &self.lost[..self.lost.len().min(10)]),
            );
        }
        if !self.unprocessed.is_empty() {
            fail(
                "trigger instances not processed",
                format!("{:?}", self.unprocessed),
            );
        }
        if !self.duplicate.is_empty() {
            fail(
                "more than one enforcement for a (trigger instance, rule)",
                first(&self.duplicate),
            );
        }
        if !self.missing.is_empty() {
            fail(
                "acknowledged webhooks without their enforcement",
                format!("{:?}", &self.missing[..self.missing.len().min(10)]),
            );
        }
        if !self.extra.is_empty() {
            fail(
                "acknowledged webhooks enforced more than once for one rule",
                format!("{:?}", &self.extra[..self.extra.len().min(10)]),
            );
        }
        if !self.duplicate_executions.is_empty() {
            fail(
                "more than one execution for a (trigger instance, rule)",
                first(&self.duplicate_executions),
            );
        }
        if !self.enforcements_without_execution.is_empty() {
            fail(
                "enforcements without an execution",
                format!(
                    "{:?}",
                    &self.enforcements_without_execution
                        [..self.enforcements_without_execution.len().min(5)]
                ),
            );
        }
    }
}
