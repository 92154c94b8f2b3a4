//! The plugin interface `stormhook:plugin@0.2.0` (issue 14): components built against 0.1.0
//! still run, the richer execution context, atomic datastore operations, secrets in the
//! datastore, and `events` (emit, request-execution) with its depth limit.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use stormhook_runtime::datastore::{Datastore, MemoryDatastore};
use stormhook_runtime::{
    ActionContext, KvGrant, PluginKind, PluginSpec, PluginState, RuntimeConfig, TriggerInstance,
};
use stormhook_tests::{TestServer, component, eventually, runtime_with};

/// A component built against 0.1.0 before the package moved on (`tests/fixtures/plugin-0.1.0`).
fn old_component(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/plugin-0.1.0/{name}.wasm"))
}

fn grant(prefix: &str) -> KvGrant {
    KvGrant {
        read: true,
        write: true,
        prefix: prefix.into(),
        secrets: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_built_against_0_1_0_still_load_and_run() {
    let datastore = Arc::new(MemoryDatastore::default());
    let runtime = runtime_with(RuntimeConfig::default(), datastore.clone());
    for (reference, path, kind) in [
        (
            "old.kv_probe",
            old_component("kv_probe"),
            PluginKind::Action,
        ),
        ("old.greet", old_component("greet"), PluginKind::Action),
        (
            "old.branch_filter",
            old_component("branch_filter"),
            PluginKind::Rule,
        ),
        ("old.pinned", component("v0_1_0_action"), PluginKind::Action),
        (
            "new.context",
            component("context_probe"),
            PluginKind::Action,
        ),
    ] {
        let spec = PluginSpec {
            kv: grant("old."),
            ..PluginSpec::new(reference, kind, path)
        };
        runtime
            .load(spec)
            .await
            .unwrap_or_else(|e| panic!("{reference}: {e}"));
    }
    let wit: Vec<(String, Option<&str>)> = runtime
        .list()
        .into_iter()
        .map(|p| {
            assert_eq!(p.state, PluginState::Ready, "{}", p.reference);
            (p.reference, p.wit)
        })
        .collect();
    assert!(
        wit.contains(&("old.greet".into(), Some("0.1.0"))),
        "{wit:?}"
    );
    assert!(
        wit.contains(&("old.pinned".into(), Some("0.1.0"))),
        "{wit:?}"
    );
    assert!(
        wit.contains(&("new.context".into(), Some("0.2.0"))),
        "{wit:?}"
    );

    // The 0.1.0 kv interface reaches the same datastore.
    let set = runtime
        .run_action(
            "old.kv_probe",
            r#"{"op":"set","key":"old.k","value":"v1"}"#,
            ActionContext::default(),
        )
        .await;
    set.result.expect("0.1.0 kv set runs");
    let stored = datastore.get("old.k").await.unwrap().unwrap();
    assert_eq!(stored.value, "v1");
    let get = runtime
        .run_action(
            "old.kv_probe",
            r#"{"op":"get","key":"old.k"}"#,
            ActionContext::default(),
        )
        .await;
    assert_eq!(get.result.unwrap(), json!({"result": "v1"}));
    // Grants still apply to 0.1.0 components.
    let denied = runtime
        .run_action(
            "old.kv_probe",
            r#"{"op":"get","key":"elsewhere"}"#,
            ActionContext::default(),
        )
        .await;
    let err = denied.result.unwrap_err().to_string();
    assert!(err.contains("not granted"), "{err}");

    let greet = runtime
        .run_action(
            "old.greet",
            r#"{"name":"Ada","greeting":"Hi"}"#,
            ActionContext {
                execution_id: "e1".into(),
                ..ActionContext::default()
            },
        )
        .await;
    assert_eq!(greet.result.unwrap()["message"], "Hi, Ada!");
    assert_eq!(greet.captured.logs.len(), 1, "{:?}", greet.captured.logs);

    let pinned = runtime
        .run_action(
            "old.pinned",
            r#"{"key":"old.pinned","value":"x"}"#,
            ActionContext {
                execution_id: "e2".into(),
                ..ActionContext::default()
            },
        )
        .await;
    let out = pinned.result.unwrap();
    assert_eq!(out["execution_id"], "e2");
    assert_eq!(out["action_ref"], "old.pinned");
    assert_eq!(out["kv"], "x");

    let push = |r: &str| TriggerInstance {
        id: "ti".into(),
        trigger: "core.t".into(),
        payload: json!({"headers": {}, "headers_lower": {}, "body": {"ref": r}}).to_string(),
        occurrence_time: "2026-12-01T00:00:00.000000Z".into(),
    };
    let matched = runtime
        .evaluate_rule("old.branch_filter", &push("refs/heads/main"))
        .await;
    let decision = matched.result.unwrap();
    assert!(decision.matched);
    assert_eq!(decision.values.unwrap()["branch"], "main");
    let other = runtime
        .evaluate_rule("old.branch_filter", &push("refs/heads/dev"))
        .await;
    assert!(!other.result.unwrap().matched);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_execution_context_carries_user_trace_deadline_parent_and_depth() {
    let runtime = runtime_with(
        RuntimeConfig::default(),
        Arc::new(MemoryDatastore::default()),
    );
    let spec = PluginSpec {
        limits: Some(stormhook_runtime::Limits {
            timeout: Duration::from_millis(7_000),
            memory_bytes: 64 << 20,
        }),
        ..PluginSpec::new("t.context", PluginKind::Action, component("context_probe"))
    };
    runtime.load(spec).await.unwrap();
    let report = runtime
        .run_action(
            "t.context",
            "{}",
            ActionContext {
                execution_id: "e9".into(),
                rule_ref: Some("t.rule".into()),
                trigger_instance: None,
                user: "ada".into(),
                trace_tag: Some("deploy-42".into()),
                parent_execution_id: Some("e8".into()),
                depth: 2,
            },
        )
        .await;
    let ctx = report.result.unwrap();
    assert_eq!(ctx["execution_id"], "e9");
    assert_eq!(ctx["action_ref"], "t.context");
    assert_eq!(ctx["rule_ref"], "t.rule");
    assert_eq!(ctx["user"], "ada");
    assert_eq!(ctx["trace_tag"], "deploy-42");
    assert_eq!(ctx["parent_execution_id"], "e8");
    assert_eq!(ctx["depth"], 2);
    assert_eq!(ctx["deadline_ms"], 7_000, "{ctx}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_increments_count_two_hundred_and_cas_loses_no_update() {
    let datastore = Arc::new(MemoryDatastore::default());
    let runtime = runtime_with(RuntimeConfig::default(), datastore.clone());
    let spec = PluginSpec {
        kv: grant("t."),
        ..PluginSpec::new("t.kv", PluginKind::Action, component("kv_atomic"))
    };
    runtime.load(spec).await.unwrap();
    let calls = (0..200).map(|_| {
        let runtime = Arc::clone(&runtime);
        tokio::spawn(async move {
            runtime
                .run_action(
                    "t.kv",
                    r#"{"op":"increment","key":"t.count","by":1}"#,
                    ActionContext::default(),
                )
                .await
                .result
                .map(|v| v["value"].as_i64().unwrap())
        })
    });
    let mut seen: Vec<i64> = Vec::new();
    for call in calls {
        seen.push(call.await.unwrap().expect("increment runs"));
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=200).collect::<Vec<_>>(),
        "every increment saw its own value"
    );
    assert_eq!(
        datastore.get("t.count").await.unwrap().unwrap().value,
        "200"
    );

    let appends = (0..40).map(|i| {
        let runtime = Arc::clone(&runtime);
        tokio::spawn(async move {
            runtime
                .run_action(
                    "t.kv",
                    &json!({"op": "cas_append", "key": "t.list", "item": i}).to_string(),
                    ActionContext::default(),
                )
                .await
                .result
        })
    });
    for append in appends {
        append.await.unwrap().expect("append runs");
    }
    let list: Vec<i64> =
        serde_json::from_str(&datastore.get("t.list").await.unwrap().unwrap().value).unwrap();
    let mut sorted = list.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..40).collect::<Vec<_>>(),
        "no append lost: {list:?}"
    );

    // A value that is not an integer is the plugin's input error, not a crash.
    datastore.set("t.word", "hello", None).await.unwrap();
    let err = runtime
        .run_action(
            "t.kv",
            r#"{"op":"increment","key":"t.word","by":1}"#,
            ActionContext::default(),
        )
        .await
        .result
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("invalid-input") && err.contains("decimal integer"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_needs_the_secrets_grant_and_is_masked_in_everything_recorded() {
    let datastore = Arc::new(MemoryDatastore::default());
    datastore.set_secret("t.token", "xoxb-very-secret-token");
    let runtime = runtime_with(RuntimeConfig::default(), datastore.clone());
    for (reference, secrets) in [("t.plain", false), ("t.trusted", true)] {
        let spec = PluginSpec {
            kv: KvGrant {
                secrets,
                ..grant("t.")
            },
            ..PluginSpec::new(reference, PluginKind::Action, component("kv_probe"))
        };
        runtime.load(spec).await.unwrap();
    }
    let params = r#"{"op":"get","key":"t.token"}"#;
    let refused = runtime
        .run_action("t.plain", params, ActionContext::default())
        .await;
    let err = refused.result.unwrap_err().to_string();
    assert!(
        err.contains("secret") && err.contains("secrets: true"),
        "{err}"
    );

    let read = runtime
        .run_action("t.trusted", params, ActionContext::default())
        .await;
    // The plugin got the value (it echoes it), and the host masked it in the result it keeps.
    assert_eq!(read.result.unwrap(), json!({"result": "********"}));
}

/// The parameters of the `events_probe` fixture, declared so the executor accepts them.
const EVENTS_PARAMS: &str = "parameters:\n  emit: {type: object}\n  request: {type: object}\n  chain: {type: boolean}\n  catch: {type: boolean}";

async fn create_trigger_type(server: &TestServer, reference: &str) {
    let (pack, name) = reference.split_once('.').unwrap();
    let resp = server
        .client()
        .post(server.url("/api/v1/triggertypes"))
        .json(&json!({"pack": pack, "name": name, "payload_schema": {"type": "object"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
}

async fn run(server: &TestServer, action: &str, parameters: Value) -> Value {
    let resp = server
        .client()
        .post(server.url("/api/v1/executions"))
        .json(&json!({"action": action, "parameters": parameters}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    finished(server, &id).await
}

async fn finished(server: &TestServer, id: &str) -> Value {
    eventually(
        Duration::from_secs(30),
        &format!("execution {id} to complete"),
        async || {
            let e = server.get_json(&format!("/api/v1/executions/{id}")).await;
            match e["status"].as_str() {
                Some("succeeded" | "failed" | "timeout" | "abandoned" | "canceled") => Ok(e),
                _ => Err(e.to_string()),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emitted_trigger_instance_fires_a_rule_one_link_deeper() {
    let rule = "name: on_deployed\ntrigger:\n  type: t.deployed\naction:\n  ref: t.context\n  parameters: {}\n";
    let server = TestServer::builder()
        .rules([("on_deployed".to_owned(), rule.to_owned())])
        .action(
            "emitter",
            "events_probe",
            &format!("events: true\n{EVENTS_PARAMS}"),
        )
        .action("silent", "events_probe", EVENTS_PARAMS)
        .action("context", "context_probe", "")
        .start()
        .await;
    create_trigger_type(&server, "t.deployed").await;

    let done = run(
        &server,
        "t.emitter",
        json!({"emit": {"trigger": "t.deployed", "payload": {"version": "1.2.3"}}}),
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let instance_id = done["result"]["result"]["trigger_instance_id"]
        .as_str()
        .expect("emit returns the instance id")
        .to_owned();
    let instance = server
        .get_json(&format!("/api/v1/triggerinstances/{instance_id}"))
        .await;
    assert_eq!(instance["trigger"], "t.deployed");
    assert_eq!(instance["payload"], json!({"version": "1.2.3"}));

    // The rule on t.deployed ran t.context for that instance, one link deeper.
    let child = eventually(
        Duration::from_secs(30),
        "the rule's execution",
        async || {
            let list = server.get_json("/api/v1/executions?action=t.context").await;
            match list.as_array().and_then(|l| l.first()) {
                Some(e) => Ok(e["id"].as_str().unwrap().to_owned()),
                None => Err(list.to_string()),
            }
        },
    )
    .await;
    let child = finished(&server, &child).await;
    assert_eq!(child["status"], "succeeded", "{child}");
    assert_eq!(child["result"]["result"]["depth"], 1, "{child}");
    assert_eq!(
        child["context"]["trigger_instance"]["id"],
        instance_id.as_str()
    );

    // Without the grant: denied, and nothing dispatched.
    let refused = run(
        &server,
        "t.silent",
        json!({"emit": {"trigger": "t.deployed", "payload": {}}}),
    )
    .await;
    assert_eq!(refused["status"], "failed");
    let error = refused["result"]["error"].as_str().unwrap();
    assert!(
        error.contains("not granted") && error.contains("events: true"),
        "{error}"
    );

    // An unknown trigger type is the plugin's input error.
    let unknown = run(
        &server,
        "t.emitter",
        json!({"emit": {"trigger": "t.nope", "payload": {}}}),
    )
    .await;
    let error = unknown["result"]["error"].as_str().unwrap();
    assert!(
        error.contains("t.nope") && error.contains("doesn't exist"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_requested_executions_stops_at_the_depth_limit_with_a_clear_error() {
    let server = TestServer::builder()
        .action(
            "chain",
            "events_probe",
            &format!("events: true\n{EVENTS_PARAMS}"),
        )
        .start()
        .await;
    let first = run(&server, "t.chain", json!({"chain": true})).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    // Follow the chain: each execution names the next one it requested.
    let mut current = first;
    let mut depth = 0;
    loop {
        assert_eq!(
            current["context"]["depth"].as_u64().unwrap_or(0),
            depth,
            "{current}"
        );
        match current["result"]["result"]["execution_id"].as_str() {
            Some(next) => {
                let next = finished(&server, next).await;
                assert_eq!(
                    next["context"]["parent"]["execution_id"], current["id"],
                    "{next}"
                );
                current = next;
                depth += 1;
            }
            None => break,
        }
    }
    // The last one was refused: the default limit is 8 links.
    assert_eq!(depth, 8, "{current}");
    assert_eq!(current["status"], "failed", "{current}");
    let error = current["result"]["error"].as_str().unwrap();
    assert!(error.contains("chain depth limit of 8"), "{error}");
}
