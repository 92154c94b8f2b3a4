//! The PostgreSQL store goes away under load and comes back: `stormhook serve` reaches its
//! database through a TCP proxy the test controls, senders post webhooks throughout (a rule
//! runs `core.noop` on each), and the proxy is cut for 8 s mid-load, then restored.
//!
//! While the database is away, every webhook answers 503 with `Retry-After` and a faultstring:
//! never a 202 the server cannot keep, never a 500, never a request left hanging (the client
//! gives up after 5 s, which fails the test). Before the cut and after the restore, 202s; after
//! the restore they come back within a bounded time without restarting the server. At the end
//! every acknowledged webhook is a trigger instance, processed, with one enforcement and a
//! succeeded execution, seen through the API and through a direct (un-proxied) connection to
//! the database; and the server's log says the database was unreachable.
//!
//! Two ways for the database to be away: the port refuses connections (the database is down),
//! or it accepts them and never answers (a black hole: the host is unreachable).
//!
//! The same for SQLite (a full disk) is `tests/integration/disk_full.rs`.
//!
//! Needs `STORMHOOK_TEST_DATABASE_URL` (skips loudly without it).

mod common;
#[path = "common/pg.rs"]
mod pg;
#[path = "common/proxy.rs"]
mod proxy;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const HOOK: &str = "outage";
/// How long the database is away: well past the 3 s a request may wait for a database
/// connection (`ACQUIRE_TIMEOUT` in `host/storage/src/postgres.rs`), so that requests are sent
/// and answered while it is away (a shorter cut only delays them).
const OUTAGE: Duration = Duration::from_secs(8);
/// No request may take longer (the client gives up past it, which fails the test).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Webhooks are accepted again within this long after the database returns.
const RECOVERY: Duration = Duration::from_secs(15);

const BEFORE: u8 = 0;
const CUT: u8 = 1;
const RESTORED: u8 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_refusing_connections_answers_503_and_recovers_without_a_restart() {
    outage("refused", proxy::Mode::Refuse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_never_answers_answers_503_and_recovers_without_a_restart() {
    outage("black hole", proxy::Mode::Hold).await;
}

/// `url` with its host and port replaced by `addr` (user, database and query kept), and the
/// `host:port` it named.
fn through(url: &str, addr: SocketAddr) -> (String, String) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (user, host_port) = match authority.rsplit_once('@') {
        Some((user, host_port)) => (format!("{user}@"), host_port),
        None => (String::new(), authority),
    };
    assert!(
        !host_port.is_empty(),
        "the test database URL must name a TCP host: {url}"
    );
    // A port after the host (and after the brackets of an IPv6 address).
    let has_port = host_port.rsplit_once(':').is_some_and(|(host, port)| {
        !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !host.ends_with(':')
    });
    let target = if has_port {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    (format!("{scheme}://{user}{addr}{tail}"), target)
}

/// One answer a sender got.
#[derive(Debug)]
struct Answer {
    n: u64,
    /// The phase when the request was sent and when it was answered.
    sent: u8,
    answered: u8,
    /// Since the test started.
    sent_at: Duration,
    took: Duration,
    /// The status, or why there was none.
    status: Result<u16, String>,
    retry_after: Option<String>,
    fault: Option<String>,
}

async fn outage(how: &str, mode: proxy::Mode) {
    let test = format!("store_outage ({how})");
    let Some(direct) = pg::fresh_schema_url(&test).await else {
        return;
    };
    let (_, target) = through(&direct, "127.0.0.1:1".parse().unwrap());
    let proxy = proxy::Proxy::start(&target).await;
    let (proxied, _) = through(&direct, proxy.addr());

    let data = tempfile::tempdir().unwrap();
    let packs = data.path().join("packs-empty");
    std::fs::create_dir_all(&packs).unwrap();
    let key = {
        let mut cmd = common::stormhook();
        cmd.args(["apikey", "create", "-k", "--data-dir"])
            .arg(data.path())
            .args(["--database-url", &direct]);
        common::run_async(cmd).await.ok().trim().to_owned()
    };
    let server = {
        let (data, packs, proxied) = (data.path().to_owned(), packs.clone(), proxied.clone());
        tokio::task::spawn_blocking(move || {
            common::spawn_serve(
                &data,
                &[
                    "--no-watch",
                    "--packs",
                    packs.to_str().unwrap(),
                    "--database-url",
                    &proxied,
                ],
            )
        })
        .await
        .unwrap()
    };
    let base = server.url.clone();
    let logs = || {
        format!(
            "\n===== server log (warnings and errors) =====\n{}",
            tail(&problems_in(&server.log()), 60)
        )
    };

    let api = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let resp = api
        .post(format!("{base}/api/v1/rules"))
        .header("St2-Api-Key", &key)
        .json(&json!({
            "name": "noop", "pack": "outage", "enabled": true,
            "trigger": {"type": "core.st2.webhook", "parameters": {"url": HOOK}},
            "criteria": {},
            "action": {"ref": "core.noop", "parameters": {}},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "creating the rule{}", logs());

    let started = Instant::now();
    let phase = Arc::new(AtomicU8::new(BEFORE));
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let answers = Arc::new(Mutex::new(Vec::<Answer>::new()));
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap();
    let mut senders = Vec::new();
    for _ in 0..8 {
        let (client, base, key) = (client.clone(), base.clone(), key.clone());
        let (phase, stop, counter, answers) = (
            Arc::clone(&phase),
            Arc::clone(&stop),
            Arc::clone(&counter),
            Arc::clone(&answers),
        );
        senders.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let sent = phase.load(Ordering::SeqCst);
                let sent_at = started.elapsed();
                let result = client
                    .post(format!("{base}/api/v1/webhooks/{HOOK}"))
                    .header("St2-Api-Key", &key)
                    .json(&json!({"n": n}))
                    .send()
                    .await;
                let mut answer = Answer {
                    n,
                    sent,
                    answered: BEFORE,
                    sent_at,
                    took: Duration::ZERO,
                    status: Err(String::new()),
                    retry_after: None,
                    fault: None,
                };
                match result {
                    Ok(resp) => {
                        answer.status = Ok(resp.status().as_u16());
                        answer.retry_after = resp
                            .headers()
                            .get("retry-after")
                            .map(|v| v.to_str().unwrap_or("?").to_owned());
                        let body: Value = resp.json().await.unwrap_or(Value::Null);
                        answer.fault = body["faultstring"].as_str().map(str::to_owned);
                    }
                    Err(e) => answer.status = Err(format!("{e:?}")),
                }
                answer.answered = phase.load(Ordering::SeqCst);
                answer.took = started.elapsed() - sent_at;
                let unavailable = answer.status == Ok(503);
                answers.lock().unwrap().push(answer);
                // Some pace, so that the executions keep up; a little more after a 503.
                let pause = if unavailable { 100 } else { 40 };
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        }));
    }
    let acked_since = |since: u8| {
        answers
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.sent >= since && a.status == Ok(202))
            .count()
    };

    // Some load first.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked_since(BEFORE) < 100 {
        assert!(
            Instant::now() < deadline,
            "100 webhooks not accepted in 30 s{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The outage.
    phase.store(CUT, Ordering::SeqCst);
    let cut_at = started.elapsed();
    match mode {
        proxy::Mode::Refuse => proxy.cut(),
        proxy::Mode::Hold => proxy.hold(),
        proxy::Mode::Open => unreachable!(),
    }
    tokio::time::sleep(OUTAGE).await;
    phase.store(RESTORED, Ordering::SeqCst);
    proxy.restore();
    let restored_at = started.elapsed();
    // Accepted again, without a restart.
    let deadline = Instant::now() + RECOVERY;
    while acked_since(RESTORED) < 100 {
        if Instant::now() >= deadline {
            stop.store(true, Ordering::Relaxed);
            panic!(
                "after the database returned, {} webhooks accepted in {RECOVERY:?} (100 expected){}",
                acked_since(RESTORED),
                logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    let answers = std::mem::take(&mut *answers.lock().unwrap());

    // What the senders saw.
    let mut problems = Vec::new();
    let mut statuses: BTreeMap<(u8, String), usize> = BTreeMap::new();
    let mut acked = HashSet::new();
    let mut slowest = Duration::ZERO;
    let mut example_fault = None;
    for a in &answers {
        slowest = slowest.max(a.took);
        let status = match &a.status {
            Ok(s) => s.to_string(),
            Err(_) => "no answer".to_owned(),
        };
        *statuses.entry((a.sent, status)).or_default() += 1;
        match &a.status {
            Ok(202) => {
                acked.insert(a.n);
                if a.sent == CUT && a.answered == CUT {
                    problems.push(format!("202 while the database was away: {a:?}"));
                }
            }
            Ok(503) => {
                if a.retry_after.is_none() || a.fault.as_deref().unwrap_or("").is_empty() {
                    problems.push(format!("503 without Retry-After or faultstring: {a:?}"));
                }
                if a.sent == BEFORE && a.answered == BEFORE {
                    problems.push(format!("503 before the outage: {a:?}"));
                }
                example_fault.get_or_insert_with(|| (a.fault.clone(), a.retry_after.clone()));
            }
            _ => problems.push(format!("unexpected answer: {a:?}")),
        }
    }
    let during: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.sent == CUT && a.answered == CUT)
        .collect();
    let unavailable_during = during.iter().filter(|a| a.status == Ok(503)).count();
    let took_503: Vec<f64> = answers
        .iter()
        .filter(|a| a.status == Ok(503))
        .map(|a| (a.took.as_secs_f64() * 10.0).round() / 10.0)
        .collect();
    let first_after = answers
        .iter()
        .filter(|a| a.sent == RESTORED && a.status == Ok(202))
        .map(|a| a.sent_at)
        .min();
    let recovered_in = first_after.map(|t| t.saturating_sub(restored_at));
    // Once accepted again, accepted from then on (2 s of grace for the pool's other
    // connections).
    if let Some(first) = first_after {
        for a in &answers {
            if a.sent == RESTORED
                && a.sent_at > first + Duration::from_secs(2)
                && a.status != Ok(202)
            {
                problems.push(format!("not accepted well after recovery: {a:?}"));
            }
        }
    }
    let count = |sent: u8, status: &str| {
        statuses
            .get(&(sent, status.to_owned()))
            .copied()
            .unwrap_or(0)
    };
    eprintln!(
        "store_outage ({how}): cut at {:.1} s for {OUTAGE:?}; sent before: {} acked, {} 503; \
         during: {} requests, {} answered 503 (and {} sent during, answered after: {:?}); \
         after: {} acked, {} 503; first 202 {:.2} s after the restore; slowest answer {:.2} s; \
         503 example: {example_fault:?}",
        cut_at.as_secs_f64(),
        count(BEFORE, "202"),
        count(BEFORE, "503"),
        during.len(),
        unavailable_during,
        answers
            .iter()
            .filter(|a| a.sent == CUT && a.answered != CUT)
            .count(),
        answers
            .iter()
            .filter(|a| a.sent == CUT && a.answered != CUT)
            .map(|a| a.status.clone().map_err(|_| "no answer"))
            .collect::<Vec<_>>(),
        count(RESTORED, "202"),
        count(RESTORED, "503"),
        recovered_in.map_or(f64::NAN, |d| d.as_secs_f64()),
        slowest.as_secs_f64(),
    );
    eprintln!(
        "store_outage ({how}): answers by phase sent and status: {statuses:?}; seconds each 503 took: {took_503:?}"
    );
    assert!(
        problems.is_empty(),
        "{} wrong answers, for example:\n{}{}",
        problems.len(),
        problems[..problems.len().min(10)].join("\n"),
        logs()
    );
    assert!(
        unavailable_during > 0,
        "no request was sent and answered while the database was away{}",
        logs()
    );
    assert!(
        recovered_in.is_some_and(|d| d <= RECOVERY),
        "webhooks not accepted within {RECOVERY:?} of the restore{}",
        logs()
    );

    // Everything acknowledged is kept and processed, without a restart: seen through the API of
    // the same server (its database connection goes through the restored proxy).
    let deadline = Instant::now() + Duration::from_secs(90);
    let (instances, enforcements, executions) = loop {
        let list = |path: &str| {
            let (api, key, url) = (api.clone(), key.clone(), format!("{base}{path}"));
            async move {
                let resp = api.get(url).header("St2-Api-Key", key).send().await;
                match resp {
                    Ok(r) if r.status() == 200 => {
                        r.json::<Vec<Value>>().await.map_err(|e| e.to_string())
                    }
                    Ok(r) => Err(format!(
                        "{} {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    )),
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        let seen = async {
            let instances =
                list("/api/v1/triggerinstances?limit=-1&trigger_type=core.st2.webhook").await?;
            let enforcements = list("/api/v1/ruleenforcements?limit=-1").await?;
            let executions = list("/api/v1/executions?limit=-1").await?;
            let waiting = instances
                .iter()
                .filter(|i| matches!(i["status"].as_str(), Some("pending" | "processing")))
                .count();
            let unfinished = executions
                .iter()
                .filter(|x| {
                    !matches!(
                        x["status"].as_str(),
                        Some("succeeded" | "failed" | "timeout" | "abandoned" | "canceled")
                    )
                })
                .count();
            if waiting > 0 || unfinished > 0 || enforcements.len() < instances.len() {
                return Err(format!(
                    "{waiting} of {} instances waiting, {} enforcements, {unfinished} of {} executions unfinished",
                    instances.len(),
                    enforcements.len(),
                    executions.len()
                ));
            }
            Ok((instances, enforcements, executions))
        };
        match seen.await {
            Ok(done) => break done,
            Err(state) if Instant::now() >= deadline => {
                panic!(
                    "the backlog did not drain in 90 s after the restore: {state}{}",
                    logs()
                )
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    let stored: HashSet<u64> = instances
        .iter()
        .filter_map(|i| i["payload"]["body"]["n"].as_u64())
        .collect();
    let mut lost: Vec<u64> = acked.difference(&stored).copied().collect();
    lost.sort_unstable();
    let unprocessed = instances
        .iter()
        .filter(|i| i["status"] != "processed")
        .count();
    let mut execution_statuses: BTreeMap<String, usize> = BTreeMap::new();
    for x in &executions {
        *execution_statuses
            .entry(x["status"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    let mut per_instance: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &enforcements {
        *per_instance
            .entry(e["trigger_instance_id"].as_str().unwrap_or("?"))
            .or_default() += 1;
    }
    let twice = per_instance.values().filter(|&&c| c > 1).count();
    let unenforced = instances
        .iter()
        .filter(|i| !per_instance.contains_key(i["id"].as_str().unwrap_or("")))
        .count();

    // The same through a direct connection to the database, not through the proxy.
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&direct)
        .await
        .expect("the database, directly");
    let by_status: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, count(*) FROM trigger_instances WHERE trigger_type = 'core.st2.webhook' GROUP BY status",
    )
    .fetch_all(&mut conn)
    .await
    .expect("counting trigger instances directly");
    let direct_total: i64 = by_status.iter().map(|(_, c)| c).sum();

    eprintln!(
        "store_outage ({how}): acked {} (before {}, after {}), stored {} ({} processed), lost {}, \
         enforcements {} ({twice} instances twice, {unenforced} none), executions {execution_statuses:?}; \
         directly: {by_status:?}; proxy accepted {} connections",
        acked.len(),
        count(BEFORE, "202"),
        count(RESTORED, "202") + count(CUT, "202"),
        instances.len(),
        instances.len() - unprocessed,
        lost.len(),
        enforcements.len(),
        proxy.accepted(),
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged webhooks lost: {:?}{}",
        lost.len(),
        &lost[..lost.len().min(10)],
        logs()
    );
    assert_eq!(unprocessed, 0, "instances not processed{}", logs());
    assert_eq!(twice, 0, "instances enforced twice{}", logs());
    assert_eq!(unenforced, 0, "instances never enforced{}", logs());
    assert_eq!(
        execution_statuses.get("succeeded").copied().unwrap_or(0),
        executions.len(),
        "every execution succeeded: {execution_statuses:?}{}",
        logs()
    );
    assert!(
        executions.len() >= enforcements.len(),
        "an execution per enforcement{}",
        logs()
    );
    assert_eq!(
        direct_total as usize,
        instances.len(),
        "the API and the database agree"
    );
    assert!(
        by_status.iter().all(|(s, _)| s == "processed"),
        "directly: {by_status:?}"
    );

    // The log says what happened.
    let log = server.stop();
    let lower = log.to_lowercase();
    let says = lower.lines().any(|l| {
        l.contains("database")
            && [
                "unreachable",
                "cannot reach",
                "unavailable",
                "refused",
                "connect",
                "timed out",
            ]
            .iter()
            .any(|w| l.contains(w))
    });
    assert!(
        says,
        "the log does not say the database was unreachable:\n{}",
        tail(&log, 80)
    );
}

/// The lines of `log` at WARN or ERROR.
fn problems_in(log: &str) -> String {
    log.lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The last `lines` lines of `log`.
fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
