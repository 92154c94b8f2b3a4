//! The rules API (`docs/st2-api.md` §3.5): create, list, get, update, delete, its
//! validation messages, and webhook registration as rules come and go.

use serde_json::{Value, json};
use stormhook_tests::{TestServer, faultstring as fault, webhook_rule};

fn rule(name: &str, url: &str) -> Value {
    json!({
        "name": name,
        "pack": "examples",
        "description": "from the API",
        "trigger": {"type": "core.st2.webhook", "parameters": {"url": url}},
        "criteria": {"trigger.body.ok": {"type": "equals", "pattern": true}},
        "action": {"ref": "core.noop", "parameters": {}}
    })
}

#[tokio::test]
async fn rules_come_and_go_with_their_webhooks() {
    let server = TestServer::builder()
        .rules([webhook_rule("from_file", "file-hook")])
        .start()
        .await;
    let client = server.client();
    let post_hook = |url: &str| {
        client
            .post(server.url(&format!("/api/v1/webhooks/{url}")))
            .json(&json!({"ok": true}))
            .send()
    };
    assert_eq!(post_hook("api-hook").await.unwrap().status(), 404);

    let resp = client
        .post(server.url("/api/v1/rules"))
        .json(&rule("r1", "/api-hook/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    assert_eq!(created["ref"], "examples.r1");
    assert_eq!(created["uid"], "rule:examples:r1");
    assert_eq!(
        created["enabled"], false,
        "disabled unless the body says otherwise"
    );
    assert_eq!(
        created["type"],
        json!({"ref": "standard", "parameters": {}})
    );
    assert_eq!(created["context"], json!({"user": "admin"}));
    assert!(
        created["trigger"]["ref"]
            .as_str()
            .unwrap()
            .starts_with("core.")
    );
    assert_eq!(created["description"], "from the API");
    let id = created["id"].as_str().unwrap().to_owned();

    // Registered at once (disabled rules register their webhook too).
    assert_eq!(post_hook("api-hook").await.unwrap().status(), 202);

    let listed: Vec<Value> = client
        .get(server.url("/api/v1/rules/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refs: Vec<&str> = listed.iter().map(|r| r["ref"].as_str().unwrap()).collect();
    assert_eq!(refs, ["examples.r1", "t.from_file"], "sorted by pack, name");
    assert_eq!(listed[1]["metadata_file"], "rules/from_file.yaml");
    for lookup in ["examples.r1", id.as_str()] {
        let one: Value = client
            .get(server.url(&format!("/api/v1/rules/{lookup}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(one["id"], id.as_str());
    }
    let filtered: Vec<Value> = client
        .get(server.url("/api/v1/rules?pack=t&enabled=true"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(filtered.len(), 1);

    let resp = client
        .post(server.url("/api/v1/rules"))
        .json(&rule("r1", "other"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["conflict-id"],
        id.as_str()
    );

    let mut changed = rule("r1", "moved-hook");
    changed["enabled"] = json!(true);
    let resp = client
        .put(server.url(&format!("/api/v1/rules/{id}")))
        .json(&changed)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["enabled"], true);
    assert_eq!(
        post_hook("api-hook").await.unwrap().status(),
        404,
        "the old url is unregistered"
    );
    assert_eq!(post_hook("moved-hook").await.unwrap().status(), 202);

    let resp = client
        .delete(server.url("/api/v1/rules/examples.r1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(post_hook("moved-hook").await.unwrap().status(), 404);
    let resp = client
        .get(server.url("/api/v1/rules/examples.r1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        fault(resp).await,
        "Resource with a reference or id \"examples.r1\" not found"
    );

    // Pack rules are edited in their files.
    let resp = client
        .delete(server.url("/api/v1/rules/t.from_file"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(fault(resp).await.contains("defined by a pack file"));
}

#[tokio::test]
async fn invalid_rules_get_stackstorms_messages() {
    let server = TestServer::builder().start().await;
    let client = server.client();
    let mut cases: Vec<(Value, &str)> = Vec::new();
    let mut no_trigger = rule("a", "x");
    no_trigger.as_object_mut().unwrap().remove("trigger");
    cases.push((no_trigger, "'trigger' is a required property"));
    let mut extra = rule("a", "x");
    extra["minutex"] = json!(1);
    cases.push((
        extra,
        "Additional properties are not allowed ('minutex' was unexpected)",
    ));
    let mut no_op = rule("a", "x");
    no_op["criteria"] = json!({"trigger.body.x": {"pattern": 1}});
    cases.push((no_op, "Operator not specified for field: trigger.body.x"));
    let mut bad_op = rule("a", "x");
    bad_op["criteria"] = json!({"trigger.body.x": {"type": "EQUALS", "pattern": 1}});
    cases.push((
        bad_op,
        "For field: trigger.body.x, operator EQUALS not in list of allowed operators",
    ));
    let mut no_pattern = rule("a", "x");
    no_pattern["criteria"] = json!({"trigger.body.x": {"type": "exists"}});
    cases.push((
        no_pattern,
        "For field: trigger.body.x, no pattern specified for operator exists",
    ));
    let mut bad_params = rule("a", "x");
    bad_params["trigger"]["parameters"] = json!({"url": "x", "path": "y"});
    cases.push((
        bad_params,
        "Additional properties are not allowed ('path' was unexpected)",
    ));
    let mut unknown_type = rule("a", "x");
    unknown_type["trigger"] = json!({"type": "nope.nothing"});
    cases.push((unknown_type, "Trigger \"nope.nothing\" defined in the rule does not exist in system or it's missing required \"parameters\" attribute"));
    // A ref is split at its first dot: no dot in a pack (`ResourceReference`).
    let mut dotted_pack = rule("a", "x");
    dotted_pack["pack"] = json!("my.pack");
    cases.push((dotted_pack, "Pack name should not contain \".\""));
    let mut wasm = rule("a", "x");
    wasm["wasm"] = json!({"entry_point": "x.wasm"});
    cases.push((wasm, "rule components are loaded from pack folders"));
    for (body, message) in cases {
        let resp = client
            .post(server.url("/api/v1/rules"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let text = fault(resp).await;
        assert!(text.contains(message), "{body}: {text}");
    }
    let listed: Vec<Value> = client
        .get(server.url("/api/v1/rules"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(listed.is_empty());
}

#[tokio::test]
async fn secret_action_parameters_are_masked_unless_asked_for() {
    let server = TestServer::builder().start().await;
    let client = server.client();
    let body = json!({
        "name": "calls_out",
        "pack": "examples",
        "trigger": {"type": "core.st2.webhook", "parameters": {"url": "out"}},
        "action": {"ref": "core.http", "parameters": {"url": "https://example.com", "password": "hunter2"}}
    });
    let resp = client
        .post(server.url("/api/v1/rules"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let shown: Value = client
        .get(server.url("/api/v1/rules/examples.calls_out"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["action"]["parameters"]["password"], "********");
    assert_eq!(shown["action"]["parameters"]["url"], "https://example.com");
    let listed: Value = client
        .get(server.url("/api/v1/rules"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["action"]["parameters"]["password"], "********");
    let revealed: Value = client
        .get(server.url("/api/v1/rules/examples.calls_out?show_secrets=true"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(revealed["action"]["parameters"]["password"], "hunter2");
}

/// `test_rules.py` `test_get_all_parameters_mask_with_include_parameters`,
/// `test_get_all_parameters_mask_with_exclude_parameters` and the shared
/// `APIControllerWithIncludeAndExcludeFilterTestCase` (`st2tests/st2tests/api.py`): partial
/// rules keep `id` and `ref`, and secrets stay masked.
#[tokio::test]
async fn include_and_exclude_attributes_on_rules() {
    let server = TestServer::builder().start().await;
    let client = server.client();
    let body = json!({
        "name": "calls_out",
        "pack": "examples",
        "trigger": {"type": "core.st2.webhook", "parameters": {"url": "out"}},
        "criteria": {"trigger.body.ok": {"type": "equals", "pattern": true}},
        "action": {"ref": "core.http", "parameters": {"url": "https://example.com", "password": "hunter2"}}
    });
    let resp = client
        .post(server.url("/api/v1/rules"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let listed = server.get_json("/v1/rules?include_attributes=id").await;
    let keys: Vec<&String> = listed[0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["id", "ref"], "the mandatory fields only");
    let listed = server
        .get_json("/v1/rules?include_attributes=criteria")
        .await;
    let keys: Vec<&String> = listed[0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["id", "ref", "criteria"]);
    let listed = server.get_json("/v1/rules?include_attributes=action").await;
    assert_eq!(listed[0]["action"]["parameters"]["password"], "********");
    let listed = server
        .get_json("/v1/rules?include_attributes=action&show_secrets=true")
        .await;
    assert_eq!(listed[0]["action"]["parameters"]["password"], "hunter2");
    let listed = server.get_json("/v1/rules?exclude_attributes=action").await;
    assert!(listed[0].get("action").is_none());
    assert_eq!(listed[0]["enabled"], false);
    let listed = server
        .get_json("/v1/rules?exclude_attributes=enabled")
        .await;
    assert!(listed[0].get("enabled").is_none());

    // The 400s for both at once and unknown fields: `server.rs`
    // `include_exclude_attributes_and_offset_on_every_list`.
}

/// `test_rules.py` `test_get_one_by_ref` (`rule space.yaml`) and names with dots
/// (`st2.webhook.github.pulls.merge.sample`): StackStorm accepts them, and a ref is split at its
/// first dot. Both through the API and in pack files.
#[tokio::test]
async fn rule_names_with_dots_and_spaces() {
    let dotted = (
        "dotted".to_owned(),
        "name: st2.webhook.github.pulls.merge.sample\ntrigger:\n  type: core.st2.webhook\n  parameters: {url: pulls}\naction: {ref: core.noop}\n".to_owned(),
    );
    let server = TestServer::builder()
        .rules([dotted])
        .action("st2.dotted action", "noop_action", "")
        .start()
        .await;
    let client = server.client();
    let one = server
        .get_json("/v1/rules/t.st2.webhook.github.pulls.merge.sample")
        .await;
    assert_eq!(one["name"], "st2.webhook.github.pulls.merge.sample");
    assert_eq!(one["pack"], "t");
    assert_eq!(one["uid"], "rule:t:st2.webhook.github.pulls.merge.sample");

    for name in ["rule space", "st2.webhook.github.pulls.merge.sample"] {
        let resp = client
            .post(server.url("/v1/rules"))
            .json(&json!({
                "name": name, "pack": "wolfpack",
                "trigger": {"type": "core.st2.webhook", "parameters": {"url": "dots"}},
                "action": {"ref": "core.noop"}
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{name}");
        let created: Value = resp.json().await.unwrap();
        assert_eq!(created["ref"], format!("wolfpack.{name}"));
        let encoded = format!("wolfpack.{name}").replace(' ', "%20");
        let one = server.get_json(&format!("/v1/rules/{encoded}")).await;
        assert_eq!(one["name"], name);
        assert_eq!(one["pack"], "wolfpack");
        let resp = client
            .delete(server.url(&format!("/v1/rules/{encoded}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204, "{name}");
    }
    // An action named with dots and a space: its ref is split at the first dot too, and it
    // runs.
    let action = server.get_json("/v1/actions/t.st2.dotted%20action").await;
    assert_eq!(
        (&action["pack"], &action["name"]),
        (&json!("t"), &json!("st2.dotted action"))
    );
    let resp = client
        .post(server.url("/v1/executions"))
        .json(&json!({"action": "t.st2.dotted action"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    stormhook_tests::eventually(
        std::time::Duration::from_secs(10),
        "the dotted action to succeed",
        async || {
            let e = server.get_json(&format!("/v1/executions/{id}")).await;
            if e["status"] == "succeeded" {
                Ok(())
            } else {
                Err(e.to_string())
            }
        },
    )
    .await;
    // Still no empty names.
    let resp = client
        .post(server.url("/v1/rules"))
        .json(&json!({
            "name": "", "pack": "wolfpack",
            "trigger": {"type": "core.st2.webhook", "parameters": {"url": "dots"}},
            "action": {"ref": "core.noop"}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

// test_rules.py: test_post_trigger_parameter_schema_validation_fails,
// test_post_trigger_parameter_schema_validation_fails_missing_required_param and
// test_post_invalid_crontimer_trigger_parameters (fixtures cron_timer_rule_invalid_parameters*.yaml,
// date_timer_rule_invalid_parameters.yaml): StackStorm's timer trigger types check their
// parameters (the schema, then APScheduler's cron fields) although Stormhook runs no timers.
#[tokio::test]
async fn timer_trigger_parameters_are_checked_as_stackstorm_checks_them() {
    let server = TestServer::builder().start().await;
    let client = server.client();
    let post = |trigger_type: &str, parameters: Value| {
        client
            .post(server.url("/api/v1/rules"))
            .json(&json!({
                "name": "timer", "pack": "timer_rules",
                "trigger": {"type": trigger_type, "parameters": parameters},
                "action": {"ref": "wolfpack.action-1", "parameters": {}}
            }))
            .send()
    };
    for (trigger_type, parameters, expected) in [
        (
            "core.st2.CronTimer",
            json!({"minutex": 0, "second": 0}),
            "Additional properties are not allowed ('minutex' was unexpected)",
        ),
        (
            "core.st2.DateTimer",
            json!({}),
            "'date' is a required property",
        ),
        (
            "core.st2.CronTimer",
            json!({"day_of_week": 1000}),
            "1000 is greater than the maximum of 6",
        ),
        (
            "core.st2.CronTimer",
            json!({"day_of_week": "abcdef"}),
            "Invalid weekday name \"abcdef\"",
        ),
        (
            "core.st2.CronTimer",
            json!({"day_of_week": "a-1"}),
            "Invalid weekday name \"a\"",
        ),
        (
            "core.st2.IntervalTimer",
            json!({"unit": "fortnights", "delta": 1}),
            "is not one of",
        ),
    ] {
        let resp = post(trigger_type, parameters.clone()).await.unwrap();
        assert_eq!(resp.status(), 400, "{parameters}");
        let message = fault(resp).await;
        assert!(message.contains(expected), "{parameters}: {message}");
    }
    let resp = post(
        "core.st2.CronTimer",
        json!({"day_of_week": "mon-fri,SUN", "hour": "*/2", "timezone": "UTC"}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 201);
}
