//! Webhooks end to end, one test per behaviour of `st2api/tests/unit/controllers/v1/test_webhooks.py`
//! (`docs/st2-api.md` §1.8), plus the extra behaviours listed there. "Dispatched payload"
//! becomes the stored trigger instance, read back through `GET /triggerinstances`.

use serde_json::{Value, json};
use stormhook_tests::{TestServer, faultstring as fault, webhook_rule};

async fn server() -> TestServer {
    let rules = [
        webhook_rule("git", "git"),
        webhook_rule("sample", "sample"),
        webhook_rule("no_slash", "no_slash"),
        webhook_rule("leading", "/with_leading_slash"),
        webhook_rule("trailing", "/with_trailing_slash/"),
        webhook_rule("both", "/with_leading_trailing_slash/"),
        webhook_rule("mixed", "/with/mixed/slash/"),
    ];
    let server = TestServer::builder().rules(rules).start().await;
    // The trigger type of the generic webhook tests (§1.8 item 5).
    let resp = server
        .client()
        .post(server.url("/api/v1/triggertypes"))
        .json(&json!({
            "name": "pr-merged", "pack": "git",
            "payload_schema": {"type": "object", "properties": {
                "value_str": {"type": "string", "required": true},
                "value_int": {"type": "integer", "required": true}}}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
    server
}

/// The webhook trigger instances, newest first.
async fn instances(server: &TestServer) -> Vec<Value> {
    let resp = server
        .client()
        .get(server.url("/api/v1/triggerinstances?limit=-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Not the instances completed executions dispatch (their rules run core.noop).
    let all: Vec<Value> = resp.json().await.unwrap();
    all.into_iter()
        .filter(|t| t["trigger"] != "core.st2.generic.actiontrigger")
        .collect()
}

async fn trace_tag_of(server: &TestServer, instance_id: &str) -> String {
    let url = server.url(&format!("/api/v1/traces?trigger_instance={instance_id}"));
    let traces: Vec<Value> = server
        .client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(traces.len(), 1, "{traces:?}");
    traces[0]["trace_tag"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn get_all_lists_every_registered_trigger() {
    let server = server().await;
    let hooks: Vec<Value> = server
        .client()
        .get(server.url("/v1/webhooks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(hooks.len(), 7);
    for hook in &hooks {
        assert_eq!(hook["type"], "core.st2.webhook");
        assert_eq!(hook["pack"], "core");
        let name = hook["name"].as_str().unwrap();
        assert_eq!(hook["ref"], format!("core.{name}"));
        assert!(
            hook["uid"]
                .as_str()
                .unwrap()
                .starts_with(&format!("trigger:core:{name}:"))
        );
        assert!(
            hook["parameters"]["url"].is_string(),
            "every item carries parameters.url"
        );
    }
    let one: Value = server
        .client()
        .get(server.url("/v1/webhooks/git"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["parameters"], json!({"url": "git"}));
    let resp = server
        .client()
        .get(server.url("/v1/webhooks/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(fault(resp).await, "Unhandled exception");
}

#[tokio::test]
async fn post_is_accepted_stored_and_traced() {
    let server = server().await;
    let body = json!({"action": "closed", "pull_request": {"merged": true}});
    let resp = server
        .client()
        .post(server.url("/v1/webhooks/git"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        body,
        "the body is echoed"
    );
    let stored = instances(&server).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["payload"]["body"], body);
    let status = stored[0]["status"].as_str().unwrap();
    assert!(
        ["pending", "processing", "processed"].contains(&status),
        "{status}"
    );
    let tag = trace_tag_of(&server, stored[0]["id"].as_str().unwrap()).await;
    assert!(
        tag.starts_with("webhook-git-") && tag.len() > "webhook-git-".len(),
        "{tag}"
    );
}

#[tokio::test]
async fn post_with_trace_tag_uses_it() {
    let server = server().await;
    let resp = server
        .client()
        .post(server.url("/v1/webhooks/git"))
        .header("St2-Trace-Tag", "tag1")
        .json(&json!({"a": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let stored = instances(&server).await;
    assert_eq!(
        trace_tag_of(&server, stored[0]["id"].as_str().unwrap()).await,
        "tag1"
    );
    assert!(
        stored[0]["payload"]["headers"]
            .get("St2-Trace-Tag")
            .is_none(),
        "the trace tag header is removed"
    );
}

#[tokio::test]
async fn post_to_an_unregistered_hook_is_404() {
    let server = server().await;
    let resp = server
        .client()
        .post(server.url("/v1/webhooks/foo"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(fault(resp).await, "Webhook foo not registered with st2");
    assert!(instances(&server).await.is_empty());
}

#[tokio::test]
async fn generic_st2_webhook_validates_against_the_trigger_type() {
    let server = server().await;
    let body = json!({"trigger": "git.pr-merged", "payload": {"value_str": "string!", "value_int": 12345}});
    for path in ["/v1/webhooks/st2", "/v1/webhooks/st2/"] {
        let resp = server
            .client()
            .post(server.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202, "{path}");
        assert_eq!(resp.json::<Value>().await.unwrap(), body);
    }
    let stored = instances(&server).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0]["trigger"], "git.pr-merged");
    assert_eq!(stored[0]["payload"], body["payload"]);
    assert!(
        trace_tag_of(&server, stored[0]["id"].as_str().unwrap())
            .await
            .starts_with("webhook-st2-")
    );

    let resp = server
        .client()
        .post(server.url("/v1/webhooks/st2"))
        .header("St2-Trace-Tag", "tag1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let newest = &instances(&server).await[0];
    assert_eq!(
        trace_tag_of(&server, newest["id"].as_str().unwrap()).await,
        "tag1"
    );
}

#[tokio::test]
async fn generic_webhook_refuses_invalid_payloads_missing_triggers_unknown_types_and_arrays() {
    let server = server().await;
    let post = |body: Value| {
        server
            .client()
            .post(server.url("/v1/webhooks/st2"))
            .json(&body)
            .send()
    };

    let resp = post(json!({"trigger": "git.pr-merged", "payload": "invalid"}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let text = fault(resp).await;
    assert!(
        text.contains("Trigger payload validation failed")
            && text.contains("'invalid' is not of type 'object'"),
        "{text}"
    );

    let resp = post(json!({"trigger": "git.pr-merged", "payload": {"value_str": "x"}}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(
        fault(resp)
            .await
            .contains("'value_int' is a required property")
    );

    let resp = post(json!({"payload": {}})).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(fault(resp).await, "Trigger not specified.");

    let resp = post(json!({"trigger": "nope.nothing", "payload": {"a": 1}}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        fault(resp).await,
        "Trigger payload validation failed and validation is enabled, not dispatching a trigger \"nope.nothing\" ({'a': 1}): Trigger type with reference \"nope.nothing\" doesn't exist in the database"
    );

    let resp = post(json!([{"foo": "bar"}])).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        fault(resp).await,
        "Webhook body needs to be an object, got: array"
    );
    assert!(
        instances(&server).await.is_empty(),
        "nothing refused is stored"
    );
}

#[tokio::test]
async fn json_bodies_with_and_without_charset_and_malformed_json() {
    let server = server().await;
    for content_type in ["application/json", "application/json; charset=utf-8"] {
        let resp = server
            .client()
            .post(server.url("/v1/webhooks/git"))
            .header("Content-Type", content_type)
            .header("St2-Trace-Tag", "tag1")
            .body(r#"{"a": "b"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        let newest = &instances(&server).await[0];
        assert_eq!(
            newest["payload"]["headers"]["Content-Type"], content_type,
            "kept verbatim"
        );
        assert_eq!(newest["payload"]["body"], json!({"a": "b"}));
    }
    let resp = server
        .client()
        .post(server.url("/v1/webhooks/git"))
        .header("Content-Type", "application/json")
        .body("invalid")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(fault(resp).await.contains("Failed to parse request body"));
}

#[tokio::test]
async fn form_bodies_become_lists() {
    let server = server().await;
    let resp = server
        .client()
        .post(server.url("/v1/webhooks/git"))
        .header(
            "Content-Type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        )
        .body("form=test")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"form": ["test"]}),
        "echoed as lists"
    );
    let newest = &instances(&server).await[0];
    assert_eq!(newest["payload"]["body"], json!({"form": ["test"]}));
    assert_eq!(
        newest["payload"]["headers"]["Content-Type"],
        "application/x-www-form-urlencoded; charset=UTF-8"
    );
}

#[tokio::test]
async fn unsupported_content_types_are_refused_before_the_hook_lookup() {
    let server = server().await;
    for hook in ["git", "not-registered"] {
        let resp = server
            .client()
            .post(server.url(&format!("/v1/webhooks/{hook}")))
            .header("Content-Type", "foo/invalid")
            .body(r#"{"a": "b"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        let text = fault(resp).await;
        assert!(
            text.contains("Failed to parse request body")
                && text.contains("Unsupported Content-Type"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn custom_hooks_accept_arrays_and_refuse_scalars() {
    let server = server().await;
    let resp = server
        .client()
        .post(server.url("/v1/webhooks/sample"))
        .json(&json!([{"foo": "bar"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!([{"foo": "bar"}]));
    for (body, message) in [
        ("123", "123 is not of type 'object', 'array'"),
        ("null", "None is not of type 'object', 'array'"),
    ] {
        let resp = server
            .client()
            .post(server.url("/v1/webhooks/sample"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        assert_eq!(fault(resp).await, message);
    }
}

#[tokio::test]
async fn leading_and_trailing_slashes_are_normalised() {
    let server = server().await;
    for hook in [
        "no_slash",
        "with_leading_slash",
        "with_trailing_slash",
        "with_leading_trailing_slash",
        "with/mixed/slash",
    ] {
        let resp = server
            .client()
            .post(server.url(&format!("/v1/webhooks/{hook}")))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202, "{hook}");
    }
    let resp = server
        .client()
        .post(server.url("/v1/webhooks//no_slash"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "/no_slash is not valid");
}

#[tokio::test]
async fn credentials_cookies_and_the_trace_tag_are_removed_from_the_payload() {
    let server = server().await;
    let resp = reqwest::Client::new()
        .post(server.url("/v1/webhooks/git"))
        .header("St2-Api-Key", &server.key)
        .header("Cookie", "foo=bar")
        .header("X-Github-Token", "customvalue")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let newest = &instances(&server).await[0];
    let headers = newest["payload"]["headers"].as_object().unwrap();
    for removed in ["St2-Api-Key", "X-Auth-Token", "Cookie"] {
        assert!(
            !headers.contains_key(removed),
            "{removed} removed: {headers:?}"
        );
    }
    assert_eq!(
        newest["payload"]["headers"]["X-Github-Token"],
        "customvalue"
    );
    assert_eq!(
        newest["payload"]["headers_lower"]["x-github-token"],
        "customvalue"
    );
    assert!(
        headers.contains_key("X-Request-Id"),
        "the request id is injected"
    );
    // Query credentials never appear in the payload either.
    let url = server.url(&format!("/v1/webhooks/git?st2-api-key={}", server.key));
    let resp = reqwest::Client::new()
        .post(url)
        .json(&json!({"q": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let newest = &instances(&server).await[0];
    assert!(!newest["payload"].to_string().contains(&server.key));
}

#[tokio::test]
async fn several_rules_on_one_url_each_get_an_instance() {
    let rules = [
        webhook_rule("a", "/shared"),
        webhook_rule("b", "shared"),
        webhook_rule("c", "shared"),
    ];
    let server = TestServer::builder().rules(rules).start().await;
    let resp = server
        .client()
        .post(server.url("/api/v1/webhooks/shared"))
        .json(&json!({"x": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let stored = instances(&server).await;
    // "/shared" and "shared" are two triggers; rules b and c share one.
    assert_eq!(stored.len(), 2);
    assert_ne!(stored[0]["trigger"], stored[1]["trigger"]);
    // Each instance carries the whole payload.
    for instance in &stored {
        assert_eq!(instance["payload"]["body"], json!({"x": 1}), "{instance}");
        assert_eq!(
            instance["payload"]["headers"]["Content-Type"],
            "application/json"
        );
    }
}

/// A JSON body is echoed as it was sent (the same JSON value, spacing kept) and stored as its
/// value; a blank JSON body is `{}`.
#[tokio::test]
async fn json_bodies_are_echoed_as_sent_and_stored_as_values() {
    let server = server().await;
    let sent = concat!(r#"  {"b": [1, 2.5, "\u00e9"],   "a": {"n": null}}"#, "\n");
    let resp = server
        .client()
        .post(server.url("/api/v1/webhooks/git"))
        .header("content-type", "application/json; charset=utf-8")
        .body(sent)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.text().await.unwrap(), sent);
    let stored = instances(&server).await;
    assert_eq!(
        stored[0]["payload"]["body"],
        json!({"b": [1, 2.5, "é"], "a": {"n": null}})
    );
    // Key order is kept.
    let keys: Vec<_> = stored[0]["payload"]["body"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(keys, ["b", "a"]);

    let resp = server
        .client()
        .post(server.url("/api/v1/webhooks/git"))
        .header("content-type", "application/json")
        .body("  ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({}));
    assert_eq!(instances(&server).await[0]["payload"]["body"], json!({}));
}

#[tokio::test]
async fn trigger_instances_page_filter_and_re_emit() {
    let server = server().await;
    for i in 0..5 {
        let resp = server
            .client()
            .post(server.url("/v1/webhooks/git"))
            .json(&json!({"i": i}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
    }
    let resp = server
        .client()
        .get(server.url("/v1/triggerinstances/?limit=2&offset=1&trigger_type=core.st2.webhook"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-total-count"], "5");
    assert_eq!(resp.headers()["x-limit"], "2");
    let page: Vec<Value> = resp.json().await.unwrap();
    assert_eq!(
        page.iter()
            .map(|t| t["payload"]["body"]["i"].clone())
            .collect::<Vec<_>>(),
        [json!(3), json!(2)],
        "newest first"
    );

    let by_type: Vec<Value> = server
        .client()
        .get(server.url("/v1/triggerinstances?trigger_type=core.st2.webhook"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_type.len(), 5);
    let none: Vec<Value> = server
        .client()
        .get(server.url("/v1/triggerinstances?trigger_type=git.pr-merged"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(none.is_empty());

    for (query, message) in [
        (
            "limit=0",
            "Limit, \"0\" specified, must be a positive number or -1 for full result set.",
        ),
        (
            "limit=-2",
            "Limit, \"-2\" specified, must be a positive number.",
        ),
        ("limit=x", "Parameter \"limit\" is not of type integer"),
    ] {
        let resp = server
            .client()
            .get(server.url(&format!("/v1/triggerinstances?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{query}");
        assert_eq!(fault(resp).await, message);
    }

    let id = page[0]["id"].as_str().unwrap();
    let one: Value = server
        .client()
        .get(server.url(&format!("/v1/triggerinstances/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["id"], id);
    let resp = server
        .client()
        .get(server.url("/v1/triggerinstances/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        fault(resp).await,
        "Unable to identify resource with id \"1\"."
    );

    let resp = server
        .client()
        .post(server.url(&format!("/v1/triggerinstances/{id}/re_emit")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["message"],
        format!("Trigger instance {id} succesfully re-sent.")
    );
    assert_eq!(body["payload"]["__context"]["original_id"], id);
    assert_eq!(instances(&server).await.len(), 6);
}

#[tokio::test]
async fn trigger_types_crud_and_system_pack_protection() {
    let server = server().await;
    let client = server.client();
    let types: Vec<Value> = client
        .get(server.url("/v1/triggertypes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refs: Vec<_> = types.iter().map(|t| t["ref"].as_str().unwrap()).collect();
    assert_eq!(
        refs,
        [
            "core.st2.generic.actiontrigger",
            "core.st2.webhook",
            "git.pr-merged"
        ],
        "sorted by ref"
    );
    assert_eq!(types[2]["uid"], "trigger_type:git:pr-merged");

    let resp = client
        .post(server.url("/v1/triggertypes"))
        .json(&json!({"name": "pr-merged", "pack": "git"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["conflict-id"], types[2]["id"]);

    let resp = client
        .put(server.url("/v1/triggertypes/git.pr-merged"))
        .json(&json!({"name": "pr-merged", "pack": "git", "description": "d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["description"], "d");

    for request in [
        client.delete(server.url("/v1/triggertypes/core.st2.webhook")),
        client
            .put(server.url("/v1/triggertypes/core.st2.webhook"))
            .json(&json!({"name": "st2.webhook", "pack": "core"})),
    ] {
        let resp = request.send().await.unwrap();
        assert_eq!(resp.status(), 400);
        assert_eq!(
            fault(resp).await,
            "Resources belonging to system level packs can't be manipulated"
        );
    }
    let resp = client
        .delete(server.url("/v1/triggertypes/git.pr-merged"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        client
            .get(server.url("/v1/triggertypes/git.pr-merged"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generic_webhook_refuses_a_bare_type_that_takes_parameters() {
    let server = server().await;
    let forged = json!({
        "trigger": "core.st2.webhook",
        "payload": {"headers": {"X-Forged": "yes"}, "body": {"ref": "refs/heads/main"}}
    });
    let resp = server
        .client()
        .post(server.url("/api/v1/webhooks/st2"))
        .json(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let message = fault(resp).await;
    assert!(
        message.starts_with("Trigger type \"core.st2.webhook\" takes parameters, so no trigger has that ref and nothing would be dispatched"),
        "{message}"
    );
    // Nothing stored, so no rule of any url fired.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(instances(&server).await.is_empty());
    assert_eq!(server.get_json("/api/v1/ruleenforcements").await, json!([]));
}
