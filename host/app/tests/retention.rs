//! Retention under load, on SQLite and on PostgreSQL: `stormhook serve` keeps trigger
//! instances, traces, enforcements and executions for 3 s and purges every second, while
//! senders post webhooks for 10 s (a rule runs `core.noop` on each, so every webhook makes an
//! instance, a trace, an enforcement, an execution and the execution's action trigger).
//!
//! The test samples the API about three times a second. Every row lives at least its TTL, so
//! a sample period under the TTL sees every row at least once, which gives:
//! - every webhook answers 202: purging never fails a request;
//! - old rows go: no sample holds a webhook instance acknowledged more than TTL + 4 s before it
//!   (the total stays bounded instead of growing with everything sent), and once the senders
//!   stop everything drains to nothing;
//! - recent rows stay: every webhook acknowledged less than TTL - 0.5 s before a sample ended
//!   is in that sample;
//! - pending work is never purged: every acknowledged webhook's instance was seen, each seen
//!   instance has an enforcement seen by some sample (an instance purged before the rules
//!   engine read it never would), each enforcement's execution was seen, and three executions
//!   that run 7 s (`core.local sleep 7`, past the TTL) are still there, running, 5 s after they
//!   started.

mod common;
#[path = "common/pg.rs"]
mod pg;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Every kind's time-to-live.
const TTL: Duration = Duration::from_secs(3);
/// How long the senders post.
const LOAD: Duration = Duration::from_secs(10);
/// A purge runs every second; a row may outlive its TTL by this much at most.
const LATE: Duration = Duration::from_secs(4);
const HOOK: &str = "retained";
const SLOW_HOOK: &str = "slow";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_purges_old_rows_under_load_on_sqlite() {
    let data = tempfile::tempdir().unwrap();
    let key = common::offline_key(data.path());
    retention("sqlite", data.path(), &key, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_purges_old_rows_under_load_on_postgres() {
    let Some(url) = pg::fresh_schema_url("retention (postgres)").await else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let mut cmd = common::stormhook();
    cmd.args(["apikey", "create", "-k", "--data-dir"])
        .arg(data.path())
        .args(["--database-url", &url]);
    let key = common::run_async(cmd).await.ok().trim().to_owned();
    retention("postgres", data.path(), &key, &["--database-url", &url]).await;
}

/// What one sample of a list saw: when its request was sent and when its answer was read,
/// since the test started, and the items.
struct Sample {
    start: Duration,
    end: Duration,
    items: Vec<Value>,
}

#[derive(Default)]
struct Seen {
    instances: Vec<Sample>,
    enforcements: Vec<Sample>,
    executions: Vec<Sample>,
    traces: Vec<Sample>,
}

async fn retention(backend: &str, data: &Path, key: &str, extra: &[&str]) {
    let packs = data.join("packs-empty");
    std::fs::create_dir_all(&packs).unwrap();
    let ttl = format!("{}s", TTL.as_secs());
    let mut args = vec![
        "--no-watch",
        "--packs",
        packs.to_str().unwrap(),
        "--trigger-instances-ttl",
        &ttl,
        "--traces-ttl",
        &ttl,
        "--enforcements-ttl",
        &ttl,
        "--executions-ttl",
        &ttl,
        "--purge-interval-secs",
        "1",
    ];
    args.extend_from_slice(extra);
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let data_dir = data.to_owned();
    let server = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::spawn_serve(&data_dir, &args)
    })
    .await
    .unwrap();
    let base = server.url.clone();
    let logs = || format!("\n===== server log =====\n{}", tail(&server.log(), 60));
    let api = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    for (name, hook, action, parameters) in [
        ("noop", HOOK, "core.noop", json!({})),
        ("slow", SLOW_HOOK, "core.local", json!({"cmd": "sleep 7"})),
    ] {
        let resp = api
            .post(format!("{base}/api/v1/rules"))
            .header("St2-Api-Key", key)
            .json(&json!({
                "name": name, "pack": "retention", "enabled": true,
                "trigger": {"type": "core.st2.webhook", "parameters": {"url": hook}},
                "criteria": {},
                "action": {"ref": action, "parameters": parameters},
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "creating rule {name}{}", logs());
    }

    let started = Instant::now();
    // The long executions, first.
    for n in 0..3 {
        let resp = api
            .post(format!("{base}/api/v1/webhooks/{SLOW_HOOK}"))
            .header("St2-Api-Key", key)
            .json(&json!({"slow": n}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202, "{}", logs());
    }

    // Senders, for LOAD.
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    // n -> when it was sent and when its 202 was read; and the requests that did not get one.
    let acked = Arc::new(Mutex::new(HashMap::<u64, (Duration, Duration)>::new()));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut senders = Vec::new();
    for _ in 0..4 {
        let (api, base, key) = (api.clone(), base.clone(), key.to_owned());
        let (stop, counter, acked, failed) = (
            Arc::clone(&stop),
            Arc::clone(&counter),
            Arc::clone(&acked),
            Arc::clone(&failed),
        );
        senders.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let sent = started.elapsed();
                let resp = api
                    .post(format!("{base}/api/v1/webhooks/{HOOK}"))
                    .header("St2-Api-Key", &key)
                    .json(&json!({"n": n}))
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status() == 202 => {
                        acked.lock().unwrap().insert(n, (sent, started.elapsed()));
                    }
                    Ok(r) => {
                        let what =
                            format!("{n}: {} {}", r.status(), r.text().await.unwrap_or_default());
                        failed.lock().unwrap().push(what);
                    }
                    Err(e) => failed.lock().unwrap().push(format!("{n}: {e}")),
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }));
    }

    // Samples, during the load and after it until everything is gone.
    let mut seen = Seen::default();
    let mut slow_checked = None;
    let mut drained_at = None;
    let mut totals = Vec::new();
    let deadline = LOAD + TTL + LATE + Duration::from_secs(20);
    // The sample that checks the long executions: it must start once they are past their TTL
    // (and 2 s more) and end before they finish (7 s after they were requested, right after
    // `started`). Samples take up to a second on a busy CI machine, so one is started at that
    // moment rather than left to the sampling rhythm.
    let slow_sample_at = TTL + Duration::from_secs(2);
    let slow_sample_by = Duration::from_millis(6900);
    loop {
        if slow_checked.is_none() {
            let now = started.elapsed();
            if now < slow_sample_at && now + Duration::from_millis(600) > slow_sample_at {
                tokio::time::sleep(slow_sample_at - now).await;
            }
        }
        let now = started.elapsed();
        if now >= LOAD && !stop.load(Ordering::Relaxed) {
            stop.store(true, Ordering::Relaxed);
        }
        let (instances, enforcements, executions, traces) = tokio::join!(
            sample(
                &api,
                &base,
                key,
                started,
                "/api/v1/triggerinstances?limit=-1&trigger_type=core.st2.webhook"
            ),
            sample(
                &api,
                &base,
                key,
                started,
                "/api/v1/ruleenforcements?limit=-1"
            ),
            sample(&api, &base, key, started, "/api/v1/executions?limit=-1"),
            sample(&api, &base, key, started, "/api/v1/traces?limit=-1"),
        );
        let (instances, enforcements, executions, traces) =
            match (instances, enforcements, executions, traces) {
                (Ok(i), Ok(e), Ok(x), Ok(t)) => (i, e, x, t),
                (i, e, x, t) => panic!(
                    "a list failed while purging: {:?} {:?} {:?} {:?}{}",
                    i.err(),
                    e.err(),
                    x.err(),
                    t.err(),
                    logs()
                ),
            };
        // The long executions, once they are past the TTL but not finished.
        let slow: Vec<&Value> = executions
            .items
            .iter()
            .filter(|x| x["action"]["ref"] == "core.local")
            .collect();
        // They started within the first second and end 7 s later.
        if slow_checked.is_none()
            && executions.start >= slow_sample_at
            && executions.end < slow_sample_by
        {
            let statuses: Vec<&str> = slow
                .iter()
                .map(|x| x["status"].as_str().unwrap_or("?"))
                .collect();
            slow_checked = Some((executions.start, statuses.len(), format!("{statuses:?}")));
            {
                assert_eq!(
                    statuses.len(),
                    3,
                    "the running executions are kept past their TTL, at {:?}: {statuses:?}{}",
                    executions.start,
                    logs()
                );
                assert!(
                    statuses
                        .iter()
                        .all(|s| matches!(*s, "running" | "scheduled" | "requested")),
                    "{statuses:?}"
                );
            }
        }
        totals.push(format!(
            "{:.1}s {}/{}/{}/{}",
            instances.start.as_secs_f64(),
            instances.items.len(),
            enforcements.items.len(),
            executions.items.len(),
            traces.items.len()
        ));
        let empty = [&instances, &enforcements, &executions, &traces]
            .iter()
            .all(|s| s.items.is_empty());
        seen.instances.push(instances);
        seen.enforcements.push(enforcements);
        seen.executions.push(executions);
        seen.traces.push(traces);
        if stop.load(Ordering::Relaxed) && empty {
            drained_at = Some(started.elapsed());
            break;
        }
        if started.elapsed() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for s in senders {
        s.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let failed = std::mem::take(&mut *failed.lock().unwrap());
    let log = server.stop();
    let logs = || format!("\n===== server log =====\n{}", tail(&log, 60));

    // Check each sample window: no gap between two samples of a kind as long as the TTL (else
    // a row could live and go unseen, and the coverage checks below would mean nothing).
    for (kind, samples) in [
        ("instances", &seen.instances),
        ("enforcements", &seen.enforcements),
        ("executions", &seen.executions),
        ("traces", &seen.traces),
    ] {
        for pair in samples.windows(2) {
            assert!(
                pair[1].end.saturating_sub(pair[0].start) < TTL,
                "{kind}: samples at {:?} and {:?} are too far apart to see every row",
                pair[0].start,
                pair[1].end
            );
        }
    }

    // Old rows gone, recent rows kept, in every sample.
    let mut stale_samples = Vec::new();
    let mut missing_recent = Vec::new();
    let mut max_instances = 0;
    let mut seen_numbers = HashSet::new();
    let mut seen_instance_ids = HashSet::new();
    for s in &seen.instances {
        max_instances = max_instances.max(s.items.len());
        let numbers: HashSet<u64> = s
            .items
            .iter()
            .filter_map(|i| i["payload"]["body"]["n"].as_u64())
            .collect();
        for i in &s.items {
            if let Some(id) = i["id"].as_str() {
                seen_instance_ids.insert(id.to_owned());
            }
        }
        let stale = numbers
            .iter()
            .filter(|n| {
                acked
                    .get(n)
                    .is_some_and(|&(_, at)| at + TTL + LATE < s.start)
            })
            .count();
        if stale > 0 {
            stale_samples.push(format!("{stale} at {:?}", s.start));
        }
        // Its occurrence time is after it was sent: younger than TTL - 0.5 s when the read ended.
        for (n, &(sent, at)) in &acked {
            if at < s.start
                && sent + TTL > s.end + Duration::from_millis(500)
                && !numbers.contains(n)
            {
                missing_recent.push(format!(
                    "{n} (sent at {sent:?}, acked at {at:?}) not in the sample {:?}..{:?}",
                    s.start, s.end
                ));
            }
        }
        seen_numbers.extend(numbers);
    }
    let mut lost: Vec<u64> = acked
        .keys()
        .filter(|n| !seen_numbers.contains(n))
        .copied()
        .collect();
    lost.sort_unstable();
    // Every instance was enforced before it went; every enforcement's execution was seen.
    let mut enforced = HashSet::new();
    let mut enforcement_executions = HashSet::new();
    let mut enforcements_seen = HashSet::new();
    for s in &seen.enforcements {
        for e in &s.items {
            enforcements_seen.insert(e["id"].as_str().unwrap_or("?").to_owned());
            enforced.insert(e["trigger_instance_id"].as_str().unwrap_or("?").to_owned());
            if let Some(x) = e["execution_id"].as_str() {
                enforcement_executions.insert(x.to_owned());
            }
        }
    }
    let mut executions_seen = HashSet::new();
    let mut statuses_seen: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for s in &seen.executions {
        for x in &s.items {
            let id = x["id"].as_str().unwrap_or("?").to_owned();
            statuses_seen
                .entry(x["status"].as_str().unwrap_or("?").to_owned())
                .or_default()
                .insert(id.clone());
            executions_seen.insert(id);
        }
    }
    let unenforced = seen_instance_ids
        .iter()
        .filter(|id| !enforced.contains(*id))
        .count();
    let executions_unseen = enforcement_executions.difference(&executions_seen).count();
    let traces_seen: HashSet<&str> = seen
        .traces
        .iter()
        .flat_map(|s| s.items.iter().filter_map(|t| t["id"].as_str()))
        .collect();

    eprintln!(
        "retention ({backend}): TTL {TTL:?}; {} webhooks sent in {LOAD:?}, {} acked, {} failed; \
         most instances at once {max_instances}; seen over {} samples: {} instances, {} \
         enforcements, {} executions ({} succeeded), {} traces; stale samples {}; recent missing {}; \
         lost {}; unenforced {unenforced}; executions never seen {executions_unseen}; slow executions at \
         {slow_checked:?}; everything gone at {drained_at:?}",
        counter.load(Ordering::Relaxed),
        acked.len(),
        failed.len(),
        seen.instances.len(),
        seen_instance_ids.len(),
        enforcements_seen.len(),
        executions_seen.len(),
        statuses_seen.get("succeeded").map_or(0, HashSet::len),
        traces_seen.len(),
        stale_samples.len(),
        missing_recent.len(),
        lost.len(),
    );
    eprintln!(
        "retention ({backend}): instances/enforcements/executions/traces per sample: {}",
        totals.join(", ")
    );
    assert!(
        failed.is_empty(),
        "{} webhooks not accepted while purging: {:?}{}",
        failed.len(),
        &failed[..failed.len().min(5)],
        logs()
    );
    assert!(
        acked.len() > 200,
        "too little load to mean anything: {}",
        acked.len()
    );
    assert!(
        stale_samples.is_empty(),
        "instances kept past TTL + {LATE:?}: {stale_samples:?}{}",
        logs()
    );
    assert!(
        missing_recent.is_empty(),
        "recent instances purged early: {:?}{}",
        &missing_recent[..missing_recent.len().min(5)],
        logs()
    );
    assert!(
        lost.is_empty(),
        "acknowledged webhooks never seen: {:?}{}",
        &lost[..lost.len().min(10)],
        logs()
    );
    assert_eq!(
        unenforced,
        0,
        "instances purged before they were enforced{}",
        logs()
    );
    assert_eq!(
        executions_unseen,
        0,
        "executions of enforcements never seen{}",
        logs()
    );
    assert!(
        max_instances < acked.len() * 8 / 10,
        "the instances kept ({max_instances} at most) are not bounded by the TTL ({} sent)",
        acked.len()
    );
    assert!(
        slow_checked.is_some(),
        "no sample of the executions between {:?} and 6.9 s, to see the long ones kept",
        TTL + Duration::from_secs(2)
    );
    assert!(
        drained_at.is_some(),
        "rows still there {:?} after the load stopped: last sample {}{}",
        deadline - LOAD,
        totals.last().unwrap(),
        logs()
    );
}

/// One list read: its items, when it was sent and when it was read.
async fn sample(
    api: &reqwest::Client,
    base: &str,
    key: &str,
    started: Instant,
    path: &str,
) -> Result<Sample, String> {
    let start = started.elapsed();
    let resp = api
        .get(format!("{base}{path}"))
        .header("St2-Api-Key", key)
        .send()
        .await
        .map_err(|e| format!("{path}: {e}"))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| format!("{path}: {e}"))?;
    let end = started.elapsed();
    if status != 200 {
        return Err(format!("{path}: {status} {text}"));
    }
    let items: Vec<Value> = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    Ok(Sample { start, end, items })
}

/// The last `lines` lines of `log`.
fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
