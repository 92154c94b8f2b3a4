//! Triggers (`/api/v1/triggers`, `docs/st2-api.md` §5.3): what exists, created, updated and
//! deleted as StackStorm's `TriggerController` does, and cleaned up with the last rule that
//! used it. Derived from `st2api/tests/unit/controllers/v1/test_triggers.py`.

use serde_json::{Value, json};
use stormhook_tests::{TestServer, faultstring as fault};

/// `test_triggers.py` `_setupTriggerTypes`: two trigger types without parameters (each has a
/// shadow trigger) and one with.
async fn server() -> TestServer {
    let server = TestServer::builder().start().await;
    let client = server.client();
    for (name, schema) in [
        ("st2.test.triggertype0", Some(json!({}))),
        ("st2.test.triggertype1", None),
        (
            "st2.test.triggertype2",
            Some(json!({"param1": {"type": "object"}})),
        ),
    ] {
        let mut body = json!({
            "name": name, "pack": "dummy_pack_1", "description": "test trigger",
            "payload_schema": {"tp1": null, "tp2": null, "tp3": null},
        });
        if let Some(schema) = schema {
            body["parameters_schema"] = schema;
        }
        let resp = client
            .post(server.url("/v1/triggertypes"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    server
}

fn trigger(n: u32, parameters: Value) -> Value {
    json!({
        "name": format!("st2.test.trigger{n}"),
        "pack": "dummy_pack_1",
        "description": "test trigger",
        "type": format!("dummy_pack_1.st2.test.triggertype{n}"),
        "parameters": parameters,
    })
}

async fn refs(server: &TestServer) -> Vec<String> {
    let listed = server.get_json("/v1/triggers").await;
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["ref"].as_str().unwrap().to_owned())
        .collect()
}

async fn post(server: &TestServer, body: &Value) -> reqwest::Response {
    server
        .client()
        .post(server.url("/v1/triggers"))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// `test_get_all`, `test_post`, `test_post_with_params`, `test_post_duplicate`,
/// `test_get_one`, `test_get_one_fail`, `test_put`, `test_put_fail`, `test_delete`.
#[tokio::test]
async fn triggers_are_listed_created_updated_and_deleted_as_in_stackstorm() {
    let server = server().await;
    let client = server.client();
    // A type without parameters registers a trigger of the same name (its shadow trigger);
    // the system's `core.st2.generic.actiontrigger` has one too.
    assert_eq!(
        refs(&server).await,
        [
            "core.st2.generic.actiontrigger",
            "dummy_pack_1.st2.test.triggertype0",
            "dummy_pack_1.st2.test.triggertype1",
        ]
    );
    let shadow = &server.get_json("/v1/triggers").await[1];
    assert_eq!(shadow["name"], "st2.test.triggertype0");
    assert_eq!(shadow["pack"], "dummy_pack_1");
    assert_eq!(shadow["type"], "dummy_pack_1.st2.test.triggertype0");
    assert_eq!(shadow["parameters"], json!({}));
    assert!(shadow.get("ref_count").is_none(), "StackStorm hides it");

    let resp = post(&server, &trigger(0, json!({}))).await;
    assert_eq!(resp.status(), 201);
    let t0: Value = resp.json().await.unwrap();
    assert_eq!(t0["ref"], "dummy_pack_1.st2.test.trigger0");
    assert_eq!(t0["description"], "test trigger");
    let resp = post(&server, &trigger(1, json!({}))).await;
    assert_eq!(resp.status(), 201);
    let t1: Value = resp.json().await.unwrap();
    assert_eq!(refs(&server).await.len(), 5, "two more");

    // A duplicate is "created" again: the one already stored.
    let again = post(&server, &trigger(1, json!({}))).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.json::<Value>().await.unwrap()["id"], t1["id"]);
    assert_eq!(refs(&server).await.len(), 5);

    let t2 = post(&server, &trigger(2, json!({"param1": {"foo": "bar"}}))).await;
    assert_eq!(t2.status(), 201);
    let t2: Value = t2.json().await.unwrap();
    assert_eq!(t2["parameters"], json!({"param1": {"foo": "bar"}}));

    let id = t1["id"].as_str().unwrap();
    let one = server.get_json(&format!("/v1/triggers/{id}")).await;
    assert_eq!(one, t1);
    let resp = client
        .get(server.url("/v1/triggers/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let missing = "0123456789abcdef01234567";
    let resp = client
        .get(server.url(&format!("/v1/triggers/{missing}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        fault(resp).await,
        format!("Unable to find the TriggerDB instance. {{'id': '{missing}'}}")
    );

    let mut update = t1.clone();
    update["description"] = json!("updated description.");
    let resp = client
        .put(server.url(&format!("/v1/triggers/{id}")))
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let updated: Value = resp.json().await.unwrap();
    assert_eq!(updated["description"], "updated description.");
    assert_eq!(updated["id"], t1["id"]);
    // The id in the url decides, not the body's.
    let resp = client
        .put(server.url("/v1/triggers/1"))
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    for t in [&t0, &t1, &t2] {
        let resp = client
            .delete(server.url(&format!("/v1/triggers/{}", t["id"].as_str().unwrap())))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204);
    }
    assert_eq!(refs(&server).await.len(), 3);

    // A shadow trigger goes with its type, not through this API.
    let shadow_id = shadow["id"].as_str().unwrap();
    let resp = client
        .delete(server.url(&format!("/v1/triggers/{shadow_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(fault(resp).await.contains("shadow trigger"));
    let resp = client
        .delete(server.url("/v1/triggertypes/dummy_pack_1.st2.test.triggertype0"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(refs(&server).await.len(), 2);

    // No pack, no ref: StackStorm's message.
    let resp = post(
        &server,
        &json!({"type": "dummy_pack_1.st2.test.triggertype1"}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        fault(resp).await,
        "Both pack and name needed for building ref. pack=None, name=None"
    );
}

/// `st2common/st2common/services/triggers.py`: a rule with parameters makes a trigger (one for
/// every rule with the same type and parameters), a rule without uses the shadow trigger, and
/// a trigger created through the API that a rule used is deleted with the last such rule
/// (`cleanup_trigger_db_for_rule`). `test_rules.py` `test_post_invalid_custom_trigger_parameter_trigger_param_validation_enabled`:
/// parameters that fail the type's schema get the whole jsonschema text.
#[tokio::test]
async fn rules_make_triggers_and_the_last_rule_takes_a_stored_one_away() {
    let server = TestServer::builder().start().await;
    let client = server.client();
    let resp = client
        .post(server.url("/v1/triggertypes"))
        .json(&json!({
            "name": "triggertype_with_parameters_2", "pack": "wolfpack",
            "payload_schema": {"type": "object"},
            "parameters_schema": {
                "type": "object", "additionalProperties": false,
                "properties": {"param1": {"type": "string", "required": true}}
            }
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let rule = |name: &str, param1: Value| {
        json!({
            "name": name, "pack": "wolfpack", "enabled": true,
            "trigger": {"type": "wolfpack.triggertype_with_parameters_2", "parameters": {"param1": param1}},
            "action": {"ref": "core.noop"}
        })
    };
    let create = |body: Value| {
        let client = client.clone();
        let url = server.url("/v1/rules");
        async move { client.post(url).json(&body).send().await.unwrap() }
    };

    let resp = create(rule("bad", json!(12345))).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        fault(resp).await,
        "12345 is not of type 'string'\n\nFailed validating 'type' in schema['properties']['param1']:\n    {'required': True, 'type': 'string'}\n\nOn instance['param1']:\n    12345"
    );
    // The same check for a trigger created through the API.
    let resp = post(
        &server,
        &json!({"name": "t", "pack": "wolfpack", "type": "wolfpack.triggertype_with_parameters_2", "parameters": {"param1": 12345}}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert!(
        fault(resp)
            .await
            .starts_with("12345 is not of type 'string'\n\nFailed validating")
    );

    // A trigger stored first, then two rules with its type and parameters use it.
    let stored = post(
        &server,
        &json!({"name": "mine", "pack": "wolfpack", "type": "wolfpack.triggertype_with_parameters_2", "parameters": {"param1": "x"}}),
    )
    .await;
    assert_eq!(stored.status(), 201);
    let r1: Value = create(rule("r1", json!("x"))).await.json().await.unwrap();
    let r2: Value = create(rule("r2", json!("x"))).await.json().await.unwrap();
    let r3 = create(rule("r3", json!("y"))).await;
    assert_eq!(r3.status(), 201);
    let r3: Value = r3.json().await.unwrap();
    let listed = refs(&server).await;
    assert!(listed.contains(&"wolfpack.mine".to_owned()), "{listed:?}");
    assert!(
        listed.contains(&r3["trigger"]["ref"].as_str().unwrap().to_owned()),
        "a rule's own trigger: {listed:?}"
    );
    assert_eq!(
        listed.len(),
        3,
        "actiontrigger's shadow, mine, r3's: {listed:?}"
    );

    let delete = |rule: &Value| {
        let client = client.clone();
        let url = server.url(&format!("/v1/rules/{}", rule["id"].as_str().unwrap()));
        async move { client.delete(url).send().await.unwrap() }
    };
    assert_eq!(delete(&r1).await.status(), 204);
    assert!(
        refs(&server).await.contains(&"wolfpack.mine".to_owned()),
        "r2 still uses it"
    );
    assert_eq!(delete(&r2).await.status(), 204);
    assert!(
        !refs(&server).await.contains(&"wolfpack.mine".to_owned()),
        "gone with r2"
    );
    assert_eq!(delete(&r3).await.status(), 204);
    assert_eq!(refs(&server).await, ["core.st2.generic.actiontrigger"]);

    // A rule without parameters uses the type's shadow trigger.
    let on_shadow = create(json!({
        "name": "on completion", "pack": "wolfpack",
        "trigger": {"type": "core.st2.generic.actiontrigger"},
        "action": {"ref": "core.noop"}
    }))
    .await;
    assert_eq!(on_shadow.status(), 201);
    let on_shadow: Value = on_shadow.json().await.unwrap();
    assert_eq!(
        on_shadow["trigger"]["ref"],
        "core.st2.generic.actiontrigger"
    );
    assert_eq!(refs(&server).await, ["core.st2.generic.actiontrigger"]);
}
