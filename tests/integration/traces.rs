//! Traces (`/api/v1/traces`, `docs/st2-api.md` §7.2): their components (trigger instances, the
//! rules enforced for them, the executions), the `execution` and `rule` filters and
//! `sort_asc`/`sort_desc`, derived from StackStorm's `test_traces.py`
//! (`st2api/tests/unit/controllers/v1/`), whose fixtures are database records: here the traces
//! come from webhooks and a rule.

use std::time::Duration;

use serde_json::{Value, json};
use stormhook_tests::{TestServer, eventually};

async fn post(server: &TestServer, path: &str, body: Value) -> Value {
    let resp = server
        .client()
        .post(server.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.unwrap()
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect()
}

/// Trigger type `wolfpack.triggertype-1` and rule `wolfpack.golden_rule`, which runs
/// `core.noop` for its instances whose `who` is `golden`.
async fn golden_rule(server: &TestServer) -> Value {
    post(
        server,
        "/api/v1/triggertypes",
        json!({"name": "triggertype-1", "pack": "wolfpack", "parameters_schema": {}}),
    )
    .await;
    post(
        server,
        "/api/v1/rules",
        json!({"name": "golden_rule", "pack": "wolfpack", "enabled": true,
               "trigger": {"type": "wolfpack.triggertype-1"},
               "criteria": {"trigger.who": {"type": "equals", "pattern": "golden"}},
               "action": {"ref": "core.noop", "parameters": {}}}),
    )
    .await
}

// test_traces.py: test_get_all_ascending_and_descending, test_query_by_action_execution,
// test_query_by_rule, test_query_by_trigger_instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_hold_their_rules_and_executions_and_filter_on_them() {
    let server = TestServer::builder().start().await;
    let rule = golden_rule(&server).await;
    let rule_id = rule["id"].as_str().unwrap();
    for who in ["nobody", "golden"] {
        let body = json!({"trigger": "wolfpack.triggertype-1", "payload": {"who": who}});
        post(&server, "/api/v1/webhooks/st2", body).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let enforcement = eventually(Duration::from_secs(10), "the enforcement", async || {
        let all = server.get_json("/api/v1/ruleenforcements").await;
        match all.get(0) {
            Some(e) if e.get("execution_id").is_some() => Ok(e.clone()),
            _ => Err(format!("{all}")),
        }
    })
    .await;
    let execution = enforcement["execution_id"].as_str().unwrap();
    let instance = enforcement["trigger_instance_id"].as_str().unwrap();

    // Once the execution's action trigger has joined the trace, the trace changes no more.
    let by_rule = eventually(Duration::from_secs(10), "the action trigger", async || {
        let by_rule = server
            .get_json(&format!("/api/v1/traces?rule={rule_id}"))
            .await;
        match by_rule[0]["trigger_instances"].as_array() {
            Some(instances) if instances.len() == 2 => Ok(by_rule),
            _ => Err(format!("{by_rule}")),
        }
    })
    .await;
    assert_eq!(by_rule.as_array().unwrap().len(), 1, "{by_rule}");
    let trace = &by_rule[0];
    assert_eq!(
        trace["rules"],
        json!([{"object_id": rule_id, "ref": "wolfpack.golden_rule",
                "updated_at": enforcement["enforced_at"],
                "caused_by": {"type": "trigger_instance", "id": instance}}])
    );
    assert_eq!(trace["trigger_instances"][0]["object_id"], instance);
    assert_eq!(trace["action_executions"][0]["object_id"], execution);
    // The list answers the same document as the get.
    let id = trace["id"].as_str().unwrap();
    assert_eq!(
        &server.get_json(&format!("/api/v1/traces/{id}")).await,
        trace
    );
    for filter in [
        format!("execution={execution}"),
        format!("trigger_instance={instance}"),
    ] {
        let found = server.get_json(&format!("/api/v1/traces?{filter}")).await;
        assert_eq!(ids(&found), [id], "{filter}");
    }
    assert_eq!(
        server
            .get_json("/api/v1/traces?rule=000000000000000000000000")
            .await,
        json!([])
    );

    // Newest first by default and with sort_desc=True; oldest first with sort_asc=True.
    let newest_first = server.get_json("/api/v1/traces").await;
    let mut oldest_first = ids(&newest_first);
    oldest_first.reverse();
    assert!(oldest_first.len() >= 2);
    assert_eq!(
        ids(&server.get_json("/api/v1/traces?sort_asc=True").await),
        oldest_first
    );
    assert_eq!(
        ids(&server.get_json("/api/v1/traces?sort_desc=True").await),
        ids(&newest_first)
    );
}

/// The trace `query` finds once it holds `instances` trigger instances (the last one the
/// action trigger of its execution, dispatched after the execution ends); it must be the only
/// one the query finds.
async fn settled_trace(server: &TestServer, query: &str, instances: usize) -> Value {
    eventually(Duration::from_secs(10), query, async || {
        let found = server.get_json(&format!("/api/v1/traces?{query}")).await;
        match found.as_array().map(Vec::as_slice) {
            Some([trace])
                if trace["trigger_instances"].as_array().map(Vec::len) == Some(instances) =>
            {
                Ok(trace.clone())
            }
            _ => Err(format!("{found}")),
        }
    })
    .await
}

/// One run, one trace, as StackStorm keeps them: a completed execution's action trigger joins
/// the execution's trace (`add_or_update_given_trace_db`) instead of starting one of its own.
/// Derived from test_traces.py: test_query_by_trace_tag (a tag finds exactly one trace) and
/// test_get_all_limit (`?limit=1` is the newest run's trace); the untagged run's
/// `execution-<id>` trace from `get_trace_db_by_live_action`, and the re-run in the original's
/// trace from test_executions.py: test_re_run_workflow_success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_is_one_trace_holding_its_action_trigger() {
    let server = TestServer::builder().start().await;
    const ACTION_TRIGGER: &str = "core.st2.generic.actiontrigger";
    let refs = |trace: &Value, field: &str| -> Vec<String> {
        trace[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["ref"].as_str().unwrap().to_owned())
            .collect()
    };

    // A manual run tagged `st2 run --trace-tag test-trace-1`.
    let tagged = post(
        &server,
        "/api/v1/executions?wait=20",
        json!({"action": "core.noop",
               "context": {"trace_context": {"trace_tag": "test-trace-1"}}}),
    )
    .await;
    assert_eq!(tagged["status"], "succeeded", "{tagged}");
    let trace = settled_trace(&server, "trace_tag=test-trace-1", 1).await;
    assert_eq!(trace["trace_tag"], "test-trace-1");
    assert_eq!(trace["id"], tagged["context"]["trace_context"]["id_"]);
    assert_eq!(refs(&trace, "trigger_instances"), [ACTION_TRIGGER]);
    assert_eq!(trace["action_executions"][0]["object_id"], tagged["id"]);
    assert_eq!(trace["action_executions"].as_array().unwrap().len(), 1);
    assert_eq!(
        trace["trigger_instances"][0]["caused_by"],
        json!({"type": "action_execution", "id": tagged["id"]})
    );
    let instance = trace["trigger_instances"][0]["object_id"].as_str().unwrap();
    let instance = server
        .get_json(&format!("/api/v1/triggerinstances/{instance}"))
        .await;
    assert_eq!(instance["payload"]["execution_id"], tagged["id"]);

    // A webhook that a rule turns into an execution.
    let rule = golden_rule(&server).await;
    let body = json!({"trigger": "wolfpack.triggertype-1", "payload": {"who": "golden"}});
    post(&server, "/api/v1/webhooks/st2", body).await;
    let trace = settled_trace(
        &server,
        &format!("rule={}", rule["id"].as_str().unwrap()),
        2,
    )
    .await;
    assert_eq!(
        refs(&trace, "trigger_instances"),
        ["wolfpack.triggertype-1", ACTION_TRIGGER]
    );
    assert_eq!(trace["trigger_instances"][0]["caused_by"], json!({}));
    assert_eq!(refs(&trace, "rules"), ["wolfpack.golden_rule"]);
    assert_eq!(refs(&trace, "action_executions"), ["core.noop"]);
    let execution = trace["action_executions"][0]["object_id"].as_str().unwrap();
    assert_eq!(
        trace["trigger_instances"][1]["caused_by"],
        json!({"type": "action_execution", "id": execution})
    );
    let by_execution = server
        .get_json(&format!("/api/v1/traces?execution={execution}"))
        .await;
    assert_eq!(ids(&by_execution), [trace["id"].as_str().unwrap()]);
    // test_get_all_limit: the newest trace is the webhook's, and there are two in all.
    let newest = server.get_json("/api/v1/traces?limit=1").await;
    assert_eq!(ids(&newest), [trace["id"].as_str().unwrap()]);
    assert_eq!(
        server
            .get_json("/api/v1/traces")
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A run by hand without a trace context starts, when requested, the trace of its id,
    // tagged `execution-<id>`; its context stays as StackStorm's.
    let manual = post(
        &server,
        "/api/v1/executions",
        json!({"action": "core.noop"}),
    )
    .await;
    assert_eq!(manual["context"], json!({"user": "admin", "pack": "core"}));
    let id = manual["id"].as_str().unwrap();
    let started = server
        .get_json(&format!("/api/v1/traces?execution={id}"))
        .await;
    assert_eq!(
        started[0]["trace_tag"],
        format!("execution-{id}"),
        "{started}"
    );
    let trace = settled_trace(&server, &format!("execution={id}"), 1).await;
    assert_eq!(trace["id"], started[0]["id"]);
    assert_eq!(trace["trace_tag"], format!("execution-{id}"));
    assert_eq!(refs(&trace, "trigger_instances"), [ACTION_TRIGGER]);
    assert_eq!(trace["action_executions"][0]["object_id"], id);
    assert_eq!(
        ids(&server.get_json("/api/v1/traces?limit=1").await),
        [trace["id"].as_str().unwrap()]
    );
    // Its re-run joins it.
    let again = post(
        &server,
        &format!("/api/v1/executions/{id}/re_run"),
        json!({}),
    )
    .await;
    assert_eq!(
        again["context"]["trace_context"],
        json!({"id_": trace["id"]})
    );
}
