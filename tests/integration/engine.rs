//! The rules engine end to end: webhooks posted over HTTP are evaluated from the store after the
//! 202. Matching YAML and WASM rules each record one enforcement; non-matching payloads record
//! none; errors record failed enforcements; backstop rules fire only when nothing else matched.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stormhook_tests::{TestServer, eventually, eventually_every};

fn rule(name: &str, url: &str, extra: &str) -> (String, String) {
    let yaml = format!(
        "name: {name}\ntrigger:\n  type: core.st2.webhook\n  parameters:\n    url: {url}\naction:\n  ref: core.noop\n{extra}"
    );
    (name.to_owned(), yaml)
}

/// Posts `body` to `/api/v1/webhooks/{url}` and waits until its trigger instance is processed;
/// returns the instance id.
async fn post_and_process(
    server: &TestServer,
    url: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> String {
    let client = server.client();
    const WEBHOOK_INSTANCES: &str =
        "/api/v1/triggerinstances?limit=-1&trigger_type=core.st2.webhook";
    let before = list(server, WEBHOOK_INSTANCES).await;
    let mut request = client
        .post(server.url(&format!("/api/v1/webhooks/{url}")))
        .json(&body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    assert_eq!(request.send().await.unwrap().status(), 202);
    eventually(
        Duration::from_secs(10),
        "the webhook's trigger instance to be processed",
        async || {
            let all = list(server, WEBHOOK_INSTANCES).await;
            let new: Vec<&Value> = all
                .iter()
                .filter(|t| !before.iter().any(|b| b["id"] == t["id"]))
                .collect();
            if let Some(t) = new.first()
                && t["status"] == "processed"
            {
                return Ok(t["id"].as_str().unwrap().to_owned());
            }
            Err(format!("not processed: {new:?}"))
        },
    )
    .await
}

/// A list the API returns at `path`.
async fn list(server: &TestServer, path: &str) -> Vec<Value> {
    serde_json::from_value(server.get_json(path).await).unwrap()
}

async fn enforcements(server: &TestServer, instance: &str) -> Vec<Value> {
    list(
        server,
        &format!("/api/v1/ruleenforcements?trigger_instance={instance}"),
    )
    .await
}

/// A stored instance the engine cannot decode (a payload that is not JSON, as disk corruption or
/// an outside write would leave it) is marked `processing_failed`, and the engine goes on to the
/// instances after it instead of retrying the batch for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_instance_fails_and_the_engine_goes_on() {
    use stormhook_storage::{NewEvent, NewInstance, Store, Trace, ids};
    let server = TestServer::builder()
        .rules([rule("after", "after", "")])
        .start()
        .await;
    let trace = Trace {
        id: ids::object_id(),
        trace_tag: "corrupt".into(),
        start_timestamp: ids::now(),
        trigger_instances: Vec::new(),
    };
    let corrupt_id = ids::object_id();
    let corrupt = NewInstance {
        id: corrupt_id.clone(),
        trigger: "core.corrupt".into(),
        trigger_type: Some("core.corrupt".into()),
        payload: "{\"body\": not json".into(),
        occurrence_time: ids::now(),
        status: stormhook_storage::InstanceStatus::Pending,
        trace_id: Some(trace.id.clone()),
        depth: 0,
    };
    server
        .store
        .commit_events(&[NewEvent {
            trace,
            instances: vec![corrupt],
            delivery: None,
        }])
        .await
        .unwrap();
    // Stored after the unreadable one, so the engine must get past it to evaluate this.
    let good = post_and_process(&server, "after", &[], json!({"a": 1})).await;
    assert_eq!(enforcements(&server, &good).await.len(), 1);
    // The store cannot decode the corrupt row, so its status is read with SQL.
    let db = rusqlite::Connection::open(server.dir.path().join("stormhook.db")).unwrap();
    let status: String = db
        .query_row(
            "SELECT status FROM trigger_instances WHERE id = ?1",
            [&corrupt_id],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(status, "processing_failed");
}

/// A log that a test can read: what a `tracing` subscriber writes.
#[derive(Clone, Default)]
struct Log(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn contains(&self, text: &str) -> bool {
        String::from_utf8_lossy(&self.0.lock().unwrap()).contains(text)
    }
}

/// When the engine cannot record a batch's results, it evaluates the batch again a second later
/// instead of leaving it `pending` until the next start.
///
/// One thread runs the server's tasks (the engine's included), so the subscriber set for this
/// thread sees the engine's log.
#[tokio::test(flavor = "current_thread")]
async fn a_batch_whose_results_cannot_be_recorded_is_evaluated_again() {
    let log = Log::default();
    let writer = log.clone();
    let _log = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    );
    let server = TestServer::builder()
        .rules([rule("retried", "retried", "")])
        .start()
        .await;
    // Every enforcement insert fails, and with it the engine's whole transaction.
    let db = rusqlite::Connection::open(server.dir.path().join("stormhook.db")).unwrap();
    db.execute_batch(
        "CREATE TRIGGER refuse_enforcements BEFORE INSERT ON rule_enforcements \
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
    )
    .unwrap();
    let client = server.client();
    let posted = client
        .post(server.url("/api/v1/webhooks/retried"))
        .json(&json!({"a": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 202);
    let instances = || {
        list(
            &server,
            "/api/v1/triggerinstances?trigger_type=core.st2.webhook",
        )
    };
    // The engine logs each failed attempt. (tracing's per-callsite interest is shared by the
    // whole test binary, and on a loaded run this thread's subscriber has missed the line: then
    // three seconds of the instance staying pending, with no enforcement, show the same thing.)
    let started = Instant::now();
    while !log.contains("recording rule enforcements failed") {
        if started.elapsed() > Duration::from_secs(3) {
            let now = instances().await;
            assert_eq!(now[0]["status"], "pending", "{now:?}");
            assert!(
                server.get_json("/api/v1/ruleenforcements").await == json!([]),
                "an enforcement was recorded through the refusing trigger"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = instances().await;
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0]["status"], "pending", "{before:?}");
    let id = before[0]["id"].as_str().unwrap().to_owned();
    // Off the runtime's one thread, which the engine needs to finish a transaction that may
    // hold the lock this waits for.
    tokio::task::spawn_blocking(move || db.execute_batch("DROP TRIGGER refuse_enforcements"))
        .await
        .unwrap()
        .unwrap();
    eventually_every(
        Duration::from_millis(50),
        Duration::from_secs(10),
        "the instance to be evaluated again once the store accepts enforcements",
        async || {
            let now = instances().await;
            if now[0]["status"] == "processed" {
                return Ok(());
            }
            Err(format!("not evaluated again: {now:?}"))
        },
    )
    .await;
    assert_eq!(enforcements(&server, &id).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_and_wasm_rules_each_produce_one_enforcement() {
    let yaml_rule = rule(
        "on_push",
        "github",
        "criteria:\n  trigger.headers_lower['x-github-event']:\n    type: equals\n    pattern: push\n  trigger.body.ref:\n    type: startswith\n    pattern: refs/heads/\n",
    );
    let server = TestServer::builder()
        .examples()
        .rules([yaml_rule])
        .start()
        .await;
    let main = json!({"ref": "refs/heads/main", "pusher": {"name": "ada"}});
    let id = post_and_process(&server, "github", &[("X-GitHub-Event", "push")], main).await;
    let found = enforcements(&server, &id).await;
    let mut rules: Vec<&str> = found
        .iter()
        .map(|e| e["rule"]["ref"].as_str().unwrap())
        .collect();
    rules.sort();
    assert_eq!(rules, ["demo.push_to_main", "t.on_push"], "{found:?}");
    for e in &found {
        assert_eq!(e["status"], "succeeded");
        assert_eq!(e["trigger_instance_id"], id.as_str());
        // Each enforcement requested one execution of the rule's action.
        let execution: Value = server
            .client()
            .get(server.url(&format!(
                "/api/v1/executions/{}",
                e["execution_id"].as_str().expect("an execution id")
            )))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(execution["rule"]["ref"], e["rule"]["ref"]);
        assert_eq!(execution["trigger_instance"]["id"], id.as_str());
        assert_eq!(execution["context"]["user"], "stanley");
        assert!(
            e.get("failure_reason").is_none(),
            "falsy fields are omitted"
        );
        assert!(e["rule"]["uid"].as_str().unwrap().starts_with("rule:"));
    }

    // A push to another branch: the YAML rule matches, the WASM rule's component says no.
    let executions: Vec<Value> = server
        .client()
        .get(server.url(&format!("/api/v1/executions?trigger_instance={id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(executions.len(), 2, "one execution per matched rule");
    // The WASM rule's values reach the action's parameters (`rule.pusher`, `rule.branch`).
    let greet = executions
        .iter()
        .find(|e| e["action"]["ref"] == "demo.greet")
        .expect("the WASM rule's execution");
    assert_eq!(
        greet["parameters"],
        json!({"name": "ada", "greeting": "Thanks for pushing to main"})
    );

    let dev = json!({"ref": "refs/heads/dev"});
    let id = post_and_process(&server, "github", &[("X-GitHub-Event", "push")], dev).await;
    let found = enforcements(&server, &id).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["rule"]["ref"], "t.on_push");

    // Another event: neither matches.
    let id = post_and_process(
        &server,
        "github",
        &[("X-GitHub-Event", "issues")],
        json!({"action": "opened"}),
    )
    .await;
    assert!(enforcements(&server, &id).await.is_empty());

    let one = &found[0];
    let by_id: Value = server
        .client()
        .get(server.url(&format!(
            "/api/v1/ruleenforcements/{}",
            one["id"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(&by_id, one);
    let resp = server
        .client()
        .get(server.url("/api/v1/ruleenforcements/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = server
        .client()
        .get(server.url("/api/v1/ruleenforcements?rule_ref=t.on_push"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-total-count"], "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_fail_the_enforcement_and_the_engine_goes_on() {
    let broken = rule(
        "broken",
        "hook",
        "criteria:\n  trigger.body.name:\n    type: regex\n    pattern: \"(unclosed\"\n",
    );
    let fine = rule(
        "fine",
        "hook",
        "criteria:\n  trigger.body.name:\n    type: exists\n    pattern: x\n",
    );
    let server = TestServer::builder().rules([broken, fine]).start().await;
    let id = post_and_process(&server, "hook", &[], json!({"name": "x"})).await;
    let found = enforcements(&server, &id).await;
    let failed = found
        .iter()
        .find(|e| e["rule"]["ref"] == "t.broken")
        .expect("a failed enforcement");
    assert_eq!(failed["status"], "failed");
    let reason = failed["failure_reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!(
            "Failed to match rule \"t.broken\" against trigger instance \"{id}\": "
        )),
        "{reason}"
    );
    // An operator that raises: StackStorm's wording (st2reactor/rules/filter.py,
    // test_rule_matcher.py's `expected_failure`).
    assert!(
        reason
            .contains("There might be a problem with the criteria in rule t.broken: invalid regex"),
        "{reason}"
    );
    assert!(
        found
            .iter()
            .any(|e| e["rule"]["ref"] == "t.fine" && e["status"] == "succeeded")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backstop_rules_fire_only_when_no_standard_rule_matched_and_disabled_rules_never() {
    let standard = rule(
        "standard",
        "hook",
        "criteria:\n  trigger.body.kind:\n    type: equals\n    pattern: known\n",
    );
    let backstop = rule("fallback", "hook", "type:\n  ref: backstop\n");
    let disabled = rule("off", "hook", "enabled: false\n");
    let server = TestServer::builder()
        .rules([standard, backstop, disabled])
        .start()
        .await;
    let id = post_and_process(&server, "hook", &[], json!({"kind": "known"})).await;
    let refs: Vec<Value> = enforcements(&server, &id)
        .await
        .iter()
        .map(|e| e["rule"]["ref"].clone())
        .collect();
    assert_eq!(refs, [json!("t.standard")]);
    let id = post_and_process(&server, "hook", &[], json!({"kind": "other"})).await;
    let refs: Vec<Value> = enforcements(&server, &id)
        .await
        .iter()
        .map(|e| e["rule"]["ref"].clone())
        .collect();
    assert_eq!(refs, [json!("t.fallback")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_templates_fail_their_enforcement_in_bounded_time_and_the_engine_goes_on() {
    let loops = rule("loops", "poison", "  parameters: {}\n");
    // A nested loop of 10^10 steps in an action parameter: a poison pill without a bound.
    let loops = (
        loops.0,
        loops.1.replace(
            "action:\n  ref: core.noop\n  parameters: {}\n",
            "action:\n  ref: core.echo\n  parameters:\n    message: \"{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}\"\n",
        ),
    );
    // A criteria pattern doubling a string until it would take a terabyte.
    let doubling = rule(
        "doubling",
        "poison",
        "criteria:\n  trigger.body.a:\n    type: equals\n    pattern: \"{% set s = namespace(v='x') %}{% for i in range(40) %}{% set s.v = s.v ~ s.v %}{% endfor %}{{ s.v }}\"\n",
    );
    let fine = rule("fine", "poison", "");
    let server = TestServer::builder()
        .rules([loops, doubling, fine])
        .start()
        .await;
    let started = Instant::now();
    let id = post_and_process(&server, "poison", &[], json!({"a": 1})).await;
    let took = started.elapsed();
    let found = enforcements(&server, &id).await;
    let by_rule = |name: &str| {
        found
            .iter()
            .find(|e| e["rule"]["ref"] == format!("t.{name}"))
            .cloned()
            .unwrap_or_else(|| panic!("no enforcement of {name}: {found:?}"))
    };
    for name in ["loops", "doubling"] {
        let e = by_rule(name);
        assert_eq!(e["status"], "failed", "{e}");
        let reason = e["failure_reason"].as_str().unwrap();
        assert!(
            reason.contains("fuel")
                || reason.contains("larger than")
                || reason.contains("too large")
                || reason.contains("limit"),
            "{name}: {reason}"
        );
    }
    assert_eq!(by_rule("fine")["status"], "succeeded");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // The engine goes on.
    post_and_process(&server, "poison", &[], json!({"a": 2})).await;
}

/// Issue 13: a rule component that loops until its deadline delays only its own instances.
/// With a backlog of them in the engine, an instance of another rule is evaluated and recorded
/// at once; and every looping instance is still recorded, once, with a failed enforcement that
/// names the deadline.
///
/// A serial engine evaluates the backlog (48 calls of 250 ms each) before the instance posted
/// after it, and records both in the same transaction: the fast instance would be seen
/// processed only once every slow one is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_rule_component_delays_only_its_own_instances() {
    const SLOW: usize = 48;
    let server = TestServer::builder()
        .rules([rule("fast", "fast", "")])
        .start()
        .await;
    // A rule component sits next to its rule file, and the builder writes rule files only: the
    // looping rule is added with its component, then the packs are reloaded.
    let rules = server.packs.root().join("t/rules");
    std::fs::copy(
        stormhook_tests::component("loop_rule"),
        rules.join("loop_rule.wasm"),
    )
    .unwrap();
    let (name, yaml) = rule(
        "slow",
        "slow",
        "wasm:\n  entry_point: loop_rule.wasm\n  timeout_ms: 250\n",
    );
    std::fs::write(rules.join(format!("{name}.yaml")), yaml).unwrap();
    let report = server.packs.reload().await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.loaded.contains(&"t.slow".to_owned()), "{report:?}");

    let client = server.client();
    let mut posts = tokio::task::JoinSet::new();
    for n in 0..SLOW {
        let post = client
            .post(server.url("/api/v1/webhooks/slow"))
            .json(&json!({"n": n}));
        posts.spawn(async move { post.send().await.unwrap().status() });
    }
    for status in posts.join_all().await {
        assert_eq!(status, 202);
    }
    let posted = client
        .post(server.url("/api/v1/webhooks/fast"))
        .json(&json!({"fast": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 202);

    const INSTANCES: &str = "/api/v1/triggerinstances?limit=-1&trigger_type=core.st2.webhook";
    let is_fast = |t: &Value| t["payload"]["body"]["fast"] == true;
    // The fast instance is recorded, and at that moment (one listing) most slow ones are not.
    let (fast, slow_unprocessed) = eventually(
        Duration::from_secs(10),
        "the fast rule's instance to be processed",
        async || {
            let all = list(&server, INSTANCES).await;
            let fast = all.iter().find(|t| is_fast(t));
            match fast {
                Some(t) if t["status"] == "processed" => {
                    let unprocessed = all
                        .iter()
                        .filter(|t| !is_fast(t) && t["status"] != "processed")
                        .count();
                    Ok((t["id"].as_str().unwrap().to_owned(), unprocessed))
                }
                _ => Err(format!("{fast:?}")),
            }
        },
    )
    .await;
    assert!(
        slow_unprocessed >= SLOW / 2,
        "the fast instance waited for the looping rule's backlog: only {slow_unprocessed} of \
         {SLOW} slow instances were still unprocessed when it was recorded"
    );
    let found = enforcements(&server, &fast).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["rule"]["ref"], "t.fast");
    assert_eq!(found[0]["status"], "succeeded");

    // Nothing lost: every slow instance is processed in the end.
    let slow: Vec<String> = eventually(
        Duration::from_secs(30),
        "every slow instance to be processed",
        async || {
            let all = list(&server, INSTANCES).await;
            let slow: Vec<&Value> = all.iter().filter(|t| !is_fast(t)).collect();
            let unprocessed = slow.iter().filter(|t| t["status"] != "processed").count();
            if slow.len() == SLOW && unprocessed == 0 {
                return Ok(slow
                    .iter()
                    .map(|t| t["id"].as_str().unwrap().to_owned())
                    .collect());
            }
            Err(format!(
                "{} slow instances, {unprocessed} unprocessed",
                slow.len()
            ))
        },
    )
    .await;
    // No duplicates: one enforcement each, failed at the deadline.
    for id in &slow {
        let found = enforcements(&server, id).await;
        assert_eq!(found.len(), 1, "{id}: {found:?}");
        assert_eq!(found[0]["rule"]["ref"], "t.slow");
        assert_eq!(found[0]["status"], "failed");
        let reason = found[0]["failure_reason"].as_str().unwrap();
        assert!(reason.contains("timed out"), "{reason}");
    }
}

/// StackStorm's Jinja filters, a missing datastore key (`""`), Python `%` formatting and the
/// criteria `to_complex` rewrite, in a YAML rule fired by a webhook
/// (`st2common/tests/unit/test_jinja_render_*_filters.py`, `st2reactor/tests/unit/test_filter.py`,
/// `docs/st2-jinja-filters.md`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stackstorm_filters_render_in_criteria_and_action_parameters() {
    let yaml = r#"name: filters
trigger:
  type: core.st2.webhook
  parameters:
    url: filters
criteria:
  trigger.body.version:
    type: equals
    pattern: "{{ '0.9.0' | version_bump_minor }}"
  trigger.body.tags:
    type: equals
    pattern: |
      [
      {% for t in trigger.body.tags %}
      {{ t | upper | lower }}{% if not loop.last %},{% endif %}
      {% endfor %}
      ]
  trigger.body.repo-name:
    type: equals
    pattern: "stormhook{{ st2kv.system.no_such_key }}"
  trigger.headers_lower.x-github-event:
    type: regex
    pattern: "{{ 'pu(s)h' | regex_replace('[()]', '') }}"
action:
  ref: core.echo
  parameters:
    message: |-
      {{ "%s@%s" % (trigger.body.user, trigger.body.version | version_bump_patch) }} [{{ st2kv.system.no_such_key }}] {{ st2kv.system.no_such_key | int }} {{ trigger.body.path | basename }} {{ trigger.body.tags | to_json_string }} {{ trigger.body.user | regex_replace('(a)', '<\\1>') }} {{ 3725 | to_human_time_from_seconds }} {{ trigger.body.version is defined }} {{ "%05.1f%%" % 12.345 }}
"#;
    let server = TestServer::builder()
        .rules([("filters".to_owned(), yaml.to_owned())])
        .start()
        .await;
    let id = post_and_process(
        &server,
        "filters",
        &[("X-GitHub-Event", "push")],
        json!({"version": "0.10.0", "tags": ["x", "y"], "repo-name": "stormhook", "user": "ada", "path": "/srv/app/file.txt"}),
    )
    .await;
    let found = enforcements(&server, &id).await;
    let enforcement = found
        .iter()
        .find(|e| e["rule"]["ref"] == "t.filters")
        .unwrap_or_else(|| panic!("no enforcement: {found:?}"));
    assert_eq!(enforcement["status"], "succeeded", "{enforcement}");
    let execution = enforcement["execution_id"].as_str().unwrap().to_owned();
    let done = eventually(
        Duration::from_secs(20),
        "the execution to finish",
        async || {
            let e = server
                .get_json(&format!("/api/v1/executions/{execution}"))
                .await;
            match e["status"].as_str() {
                Some("succeeded" | "failed") => Ok(e),
                _ => Err(e.to_string()),
            }
        },
    )
    .await;
    let expected = r#"ada@0.10.1 [] 0 file.txt ["x","y"] <a>d<a> 1h2m5s True 012.3%"#;
    assert_eq!(done["parameters"]["message"], expected, "{done}");
    assert_eq!(done["result"]["stdout"], expected, "{done}");
}
