//! st2web's view endpoints: `/rules/views` (rules with their action's and trigger's
//! descriptions) and `/ruleenforcements/views` (enforcements with their trigger instance and
//! a summary of their execution), derived from StackStorm's `test_rule_views.py` and
//! `test_rule_enforcement_views.py` (`st2api/tests/unit/controllers/v1/`).

use std::time::Duration;

use serde_json::{Value, json};
use stormhook_tests::{TestServer, eventually, faultstring};

/// `triggertype1.yaml` of StackStorm's generic fixtures.
fn trigger_type() -> Value {
    json!({"name": "triggertype-1", "pack": "wolfpack", "description": "awesome trigger-1",
           "parameters_schema": {}, "payload_schema": {}})
}

fn rule(name: &str, action: &str, who: &str) -> Value {
    let parameters = if action == "core.echo" {
        json!({"message": "bar"})
    } else {
        json!({})
    };
    json!({
        "name": name, "pack": "wolfpack", "enabled": true,
        "trigger": {"type": "wolfpack.triggertype-1"},
        "criteria": {"trigger.who": {"type": "equals", "pattern": who}},
        "action": {"ref": action, "parameters": parameters}
    })
}

async fn post(server: &TestServer, path: &str, body: &Value) -> Value {
    let resp = server
        .client()
        .post(server.url(path))
        .json(body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.unwrap()
}

async fn get(server: &TestServer, path: &str) -> (u16, Value) {
    let resp = server.client().get(server.url(path)).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

// test_rule_views.py: test_get_all, test_get_one_by_id, test_get_one_by_ref, and the include and
// exclude cases of APIControllerWithIncludeAndExcludeFilterTestCase.
#[tokio::test]
async fn rule_views_add_the_action_and_trigger_descriptions() {
    let server = TestServer::builder().start().await;
    post(&server, "/api/v1/triggertypes", &trigger_type()).await;
    let created = post(&server, "/api/v1/rules", &rule("rule1", "core.noop", "x")).await;
    let id = created["id"].as_str().unwrap();
    let (_, action) = get(&server, "/api/v1/actions/core.noop").await;
    let description = action["description"].as_str().unwrap();
    assert!(!description.is_empty());

    let (status, all) = get(&server, "/api/v1/rules/views").await;
    assert_eq!(status, 200);
    assert_eq!(all.as_array().unwrap().len(), 1);
    for path in [
        format!("/api/v1/rules/views/{id}"),
        "/api/v1/rules/views/wolfpack.rule1".to_owned(),
    ] {
        let (status, one) = get(&server, &path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(one["id"], id);
        assert_eq!(one["name"], "rule1");
        assert_eq!(one["action"]["description"], description);
        assert_eq!(one["trigger"]["description"], "awesome trigger-1");
        assert_eq!(one["trigger"]["type"], "wolfpack.triggertype-1");
    }
    assert_eq!(
        all[0],
        get(&server, &format!("/api/v1/rules/views/{id}")).await.1
    );

    // The view's additions follow include_attributes / exclude_attributes.
    let (_, partial) = get(&server, "/api/v1/rules/views?include_attributes=criteria").await;
    let mut keys: Vec<&String> = partial[0].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["criteria", "id", "ref"]);
    let (_, partial) = get(&server, "/api/v1/rules/views?exclude_attributes=enabled").await;
    assert!(partial[0].get("enabled").is_none());
    assert_eq!(partial[0]["trigger"]["description"], "awesome trigger-1");
    let resp = server
        .client()
        .get(server.url("/api/v1/rules/views?include_attributes=id&exclude_attributes=id"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(faultstring(resp).await.contains("mutually exclusive"));
    assert_eq!(get(&server, "/api/v1/rules/views/1").await.0, 404);
}

// test_rule_enforcement_views.py: test_get_all, test_filter_by_rule_ref, test_get_one_success
// (StackStorm's fixtures are database records; here the enforcements come from real rules).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforcement_views_add_the_trigger_instance_and_the_execution() {
    let server = TestServer::builder().start().await;
    post(&server, "/api/v1/triggertypes", &trigger_type()).await;
    post(
        &server,
        "/api/v1/rules",
        &rule("golden_rule", "core.echo", "golden"),
    )
    .await;
    post(
        &server,
        "/api/v1/rules",
        &rule("other_rule", "wolfpack.missing", "other"),
    )
    .await;
    for who in ["golden", "other"] {
        let body = json!({"trigger": "wolfpack.triggertype-1", "payload": {"who": who}});
        let resp = server
            .client()
            .post(server.url("/api/v1/webhooks/st2"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
    }
    let views = eventually(Duration::from_secs(10), "two enforcements", async || {
        let (_, all) = get(&server, "/api/v1/ruleenforcements/views").await;
        let all = all.as_array().unwrap().clone();
        let done = all.len() == 2
            && all.iter().all(|e| {
                e["rule"]["ref"] == "wolfpack.other_rule" || e.get("execution_id").is_some()
            });
        if done {
            Ok(all)
        } else {
            Err(format!("{all:?}"))
        }
    })
    .await;
    let golden = views
        .iter()
        .find(|e| e["rule"]["ref"] == "wolfpack.golden_rule")
        .unwrap();
    assert_eq!(
        golden["trigger_instance"]["id"],
        golden["trigger_instance_id"]
    );
    assert_eq!(
        golden["trigger_instance"]["payload"],
        json!({"who": "golden"})
    );
    assert_eq!(
        golden["trigger_instance"]["trigger"],
        "wolfpack.triggertype-1"
    );
    let execution = &golden["execution"];
    assert_eq!(execution["id"], golden["execution_id"]);
    assert_eq!(execution["action"]["ref"], "core.echo");
    assert_eq!(execution["parameters"], json!({"message": "bar"}));
    assert!(execution["status"].is_string());
    assert!(execution["runner"]["name"].is_string());
    let mut keys: Vec<&String> = execution.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["action", "id", "parameters", "runner", "status"]);
    let other = views
        .iter()
        .find(|e| e["rule"]["ref"] == "wolfpack.other_rule")
        .unwrap();
    assert_eq!(other["execution"], json!({}));
    assert_eq!(
        other["trigger_instance"]["payload"],
        json!({"who": "other"})
    );

    let (_, filtered) = get(
        &server,
        "/api/v1/ruleenforcements/views?rule_ref=wolfpack.golden_rule",
    )
    .await;
    assert_eq!(filtered.as_array().unwrap().len(), 1);
    assert_eq!(filtered[0]["rule"]["ref"], "wolfpack.golden_rule");
    let id = golden["id"].as_str().unwrap();
    let (status, one) = get(&server, &format!("/api/v1/ruleenforcements/views/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(&one, golden);
    assert_eq!(
        get(&server, "/api/v1/ruleenforcements/views/1").await.0,
        404
    );

    // include_attributes applies to the view's additions too (StackStorm's router filters
    // the controller's answer).
    let (_, partial) = get(
        &server,
        "/api/v1/ruleenforcements/views?include_attributes=id",
    )
    .await;
    let keys: Vec<&String> = partial[0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["id"]);
}
