//! The plugin endpoints and StackStorm's routing conventions against a real server. (The
//! conventions that need no socket are tested at the router: `host/server/tests/router.rs`.)

use serde_json::Value;
use stormhook_tests::{TestServer, faultstring, webhook_rule};

#[tokio::test]
async fn plugins_are_listed_under_both_prefixes_with_version_and_load_time() {
    let server = TestServer::builder().examples().start().await;
    let client = server.client();
    for path in ["/api/v1/plugins", "/v1/plugins", "/api/v1/plugins/"] {
        let resp = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let rows: Vec<serde_json::Value> = resp.json().await.unwrap();
        let greet = rows
            .iter()
            .find(|r| r["ref"] == "demo.greet")
            .expect("demo.greet is listed");
        assert_eq!(greet["kind"], "action");
        assert_eq!(greet["version"].as_str().unwrap().len(), 64);
        assert!(greet["loaded_at"].as_str().unwrap().ends_with('Z'));
        assert!(greet["last_error"].is_null());
        assert!(
            rows.iter()
                .any(|r| r["ref"] == "demo.push_to_main" && r["kind"] == "rule")
        );
    }
}

#[tokio::test]
async fn reload_rescans_and_reports() {
    let server = TestServer::builder().examples().start().await;
    let resp = server
        .client()
        .post(server.url("/api/v1/plugins/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["unchanged"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "demo.greet"),
        "{body}"
    );
    assert!(body["errors"].as_array().unwrap().is_empty(), "{body}");
}

#[tokio::test]
async fn cors_answers_only_allowed_origins_with_credentials() {
    let settings = stormhook_server::Settings {
        allow_origins: vec!["https://st2web.example.com/".into()],
        ..Default::default()
    };
    let server = TestServer::builder().settings(settings).start().await;
    let get = |origin: Option<&str>| {
        let mut request = server.client().get(server.url("/api/v1/webhooks"));
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        request.send()
    };
    // The API's own URL and the configured origin are echoed, with credentials.
    for origin in [server.base.as_str(), "https://st2web.example.com"] {
        let resp = get(Some(origin)).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["access-control-allow-origin"], origin);
        assert_eq!(resp.headers()["access-control-allow-credentials"], "true");
        assert_eq!(resp.headers()["vary"], "Origin");
    }
    // Any other origin is not: no allowed origin, and no credentials.
    for origin in ["https://evil.example", "null", "http://127.0.0.1:1"] {
        let resp = get(Some(origin)).await.unwrap();
        assert!(
            resp.headers().get("access-control-allow-origin").is_none(),
            "{origin}"
        );
        assert!(
            resp.headers()
                .get("access-control-allow-credentials")
                .is_none(),
            "{origin}"
        );
    }
    // The preflight too.
    let resp = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, server.url("/api/v1/executions"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    // Without an Origin: the API's own.
    let resp = get(None).await.unwrap();
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        server.base.as_str()
    );

    // `*` allows every origin, without credentials.
    let settings = stormhook_server::Settings {
        allow_origins: vec!["*".into()],
        ..Default::default()
    };
    let open = TestServer::builder().settings(settings).start().await;
    let resp = open
        .client()
        .get(open.url("/api/v1/webhooks"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    assert!(
        resp.headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
}

#[tokio::test]
async fn extractor_rejections_are_faultstrings_too() {
    let server = TestServer::builder().start().await;
    // Not valid UTF-8 once percent-decoded.
    let resp = server
        .client()
        .get(server.url("/api/v1/triggerinstances/%FF%FE"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["faultstring"].as_str().is_some_and(|f| !f.is_empty()),
        "{body}"
    );
}

/// `include_attributes` / `exclude_attributes` on every list that declares them in StackStorm
/// (`st2tests/st2tests/api.py` `APIControllerWithIncludeAndExcludeFilterTestCase`, with each
/// controller's test case's field names: `test_rules.py`, `test_triggertypes.py`, `test_triggerinstances.py`,
/// `test_rule_enforcements.py`, `test_traces.py`, `test_actions.py`, `test_executions.py`),
/// and `test_executions.py` `test_get_all_invalid_offset_too_large` /
/// `test_auth_api_keys.py` `test_get_all_invalid_offset_too_large`.
#[tokio::test]
async fn include_exclude_attributes_and_offset_on_every_list() {
    let server = TestServer::builder()
        .rules([webhook_rule("sample", "sample")])
        .start()
        .await;
    let client = server.client();
    let resp = client
        .post(server.url("/v1/webhooks/sample"))
        .json(&serde_json::json!({"a": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    stormhook_tests::eventually(
        std::time::Duration::from_secs(10),
        "an enforcement and an execution",
        async || {
            let e = server.get_json("/v1/ruleenforcements").await;
            let x = server.get_json("/v1/executions").await;
            match (e.as_array().map(Vec::len), x.as_array().map(Vec::len)) {
                (Some(1..), Some(1..)) => Ok(()),
                _ => Err(format!("{e} {x}")),
            }
        },
    )
    .await;

    // (path, mandatory fields, a field to include, a field to exclude)
    let cases: [(&str, &[&str], &str, &str); 7] = [
        ("/v1/rules", &["id", "ref"], "criteria", "enabled"),
        (
            "/v1/triggertypes",
            &["id", "ref"],
            "payload_schema",
            "parameters_schema",
        ),
        ("/v1/triggerinstances", &["id"], "trigger", "payload"),
        ("/v1/ruleenforcements", &["id"], "enforced_at", "status"),
        ("/v1/traces", &["id"], "trace_tag", "start_timestamp"),
        ("/v1/actions", &["id", "ref"], "entry_point", "parameters"),
        ("/v1/executions", &["id"], "status", "status"),
    ];
    for (path, mandatory, include, exclude) in cases {
        let listed = server
            .get_json(&format!("{path}?include_attributes={}", mandatory[0]))
            .await;
        let keys: Vec<&str> = listed[0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, mandatory, "{path}");
        let listed = server
            .get_json(&format!("{path}?include_attributes={include}"))
            .await;
        let item = listed[0].as_object().unwrap();
        assert_eq!(item.len(), mandatory.len() + 1, "{path}: {item:?}");
        assert!(item.contains_key(include), "{path}");
        let listed = server.get_json(path).await;
        assert!(listed[0].get(exclude).is_some(), "{path}");
        let listed = server
            .get_json(&format!("{path}?exclude_attributes={exclude}"))
            .await;
        assert!(listed[0].get(exclude).is_none(), "{path}");

        for (query, message) in [
            (
                "include_attributes=id&exclude_attributes=id",
                "exclude_fields and include_fields arguments are mutually exclusive. You need to provide either one or another, but not both.",
            ),
            (
                "exclude_attributes=invalid_field",
                "Invalid or unsupported exclude attribute specified: invalid_field",
            ),
            (
                "include_attributes=invalid_field",
                "Invalid or unsupported include attribute specified: invalid_field",
            ),
        ] {
            let resp = client
                .get(server.url(&format!("{path}?{query}")))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 400, "{path}?{query}");
            assert_eq!(faultstring(resp).await, message, "{path}?{query}");
        }
        // Rules declare no `offset`: StackStorm ignores it there.
        let resp = client
            .get(server.url(&format!("{path}?offset=2147483648")))
            .send()
            .await
            .unwrap();
        if path == "/v1/rules" {
            assert_eq!(resp.status(), 200);
        } else {
            assert_eq!(resp.status(), 400, "{path}");
            assert_eq!(
                faultstring(resp).await,
                "Offset \"2147483648\" specified is more than 32-bit int",
                "{path}"
            );
        }
    }

    // Executions keep what masking their secret parameters needs
    // (`test_get_all_exclude_attributes_and_include_attributes_are_mutually_exclusive` and
    // `test_get_single_attribute_exclude_action_runner` in `test_executions.py`); a single
    // execution words "both at once" as the router does.
    let executions = server.get_json("/v1/executions").await;
    let id = executions[0]["id"].as_str().unwrap();
    for path in [
        "/v1/executions?exclude_attributes=action".to_owned(),
        format!("/v1/executions/{id}?exclude_attributes=runner"),
    ] {
        let resp = client.get(server.url(&path)).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        assert!(
            faultstring(resp)
                .await
                .starts_with("Invalid or unsupported exclude attribute specified: "),
            "{path}"
        );
    }
    let resp = client
        .get(server.url(&format!(
            "/v1/executions/{id}?include_attributes=status&exclude_attributes=result"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        faultstring(resp).await,
        "exclude_attributes and include_attributes arguments are mutually exclusive. You need to provide either one or another, but not both."
    );
    let one: Value = server
        .get_json(&format!("/v1/executions/{id}?include_attributes=status"))
        .await;
    let mut keys: Vec<&String> = one.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["id", "status"]);

    // API keys word the offset message their own way.
    let resp = client
        .get(server.url("/v1/apikeys?offset=2147483648"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        faultstring(resp).await,
        "Offset \"2147483648\" specified is more than 32 bit int"
    );
}

// st2api test_base.py test_defaults: the API root answers 200 (general API info,
// `st2api/st2api/controllers/root.py`) with the CORS headers; a credential is needed.
#[tokio::test]
async fn the_api_root_answers_its_info() {
    let server = TestServer::builder().start().await;
    for path in ["/api/", "/api/v1/", "/api/v1", "/v1"] {
        let resp = server.client().get(server.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(
            resp.headers()["access-control-allow-methods"],
            "GET,POST,PUT,DELETE,OPTIONS"
        );
        assert_eq!(
            resp.headers()["access-control-expose-headers"],
            "Content-Type,X-Limit,X-Total-Count,X-Request-ID"
        );
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["version"], "3.9.0");
        assert_eq!(body["docs_url"], "http://docs.stackstorm.com/3.9");
        let anonymous = reqwest::get(server.url(path)).await.unwrap();
        assert_eq!(anonymous.status(), 401, "{path}");
    }
}
