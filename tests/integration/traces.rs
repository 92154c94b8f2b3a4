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

// test_traces.py: test_get_all_ascending_and_descending, test_query_by_action_execution,
// test_query_by_rule, test_query_by_trigger_instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_hold_their_rules_and_executions_and_filter_on_them() {
    let server = TestServer::builder().start().await;
    post(
        &server,
        "/api/v1/triggertypes",
        json!({"name": "triggertype-1", "pack": "wolfpack", "parameters_schema": {}}),
    )
    .await;
    let rule = post(
        &server,
        "/api/v1/rules",
        json!({"name": "golden_rule", "pack": "wolfpack", "enabled": true,
               "trigger": {"type": "wolfpack.triggertype-1"},
               "criteria": {"trigger.who": {"type": "equals", "pattern": "golden"}},
               "action": {"ref": "core.noop", "parameters": {}}}),
    )
    .await;
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

    let by_rule = server
        .get_json(&format!("/api/v1/traces?rule={rule_id}"))
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
