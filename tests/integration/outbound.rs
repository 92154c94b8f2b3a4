//! Outbound HTTP from WASM actions (issue 14), end to end: a Rust action using the SDK's
//! client against a local server (allowed, denied, recorded, capped, cut at the deadline), and
//! the example Slack pack posting to a fake Slack whose webhook URL is a secret in the pack
//! config, which must appear nowhere the server shows.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::{any, post};
use serde_json::{Value, json};
use stormhook_runtime::datastore::MemoryDatastore;
use stormhook_runtime::{ActionContext, Limits, PluginKind, PluginSpec, RuntimeConfig};
use stormhook_tests::{TestServer, component, eventually, runtime_with};

/// One request the fake server received.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: String,
}

/// A local server: `/echo` answers 200 with a fixed text, `/big` 64 KiB, `/slow` never
/// answers, `/services/...` answers like Slack (`ok`). Returns its port and what it saw.
async fn fake_server() -> (u16, Arc<Mutex<Vec<Seen>>>) {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let record = {
        let seen = Arc::clone(&seen);
        move |uri: Uri, headers: HeaderMap, body: Bytes| {
            seen.lock().unwrap().push(Seen {
                path: uri.path().to_owned(),
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
    };
    let r1 = record.clone();
    let r2 = record.clone();
    let r3 = record.clone();
    let app = Router::new()
        .route(
            "/echo",
            any(move |uri: Uri, h: HeaderMap, b: Bytes| async move {
                r1(uri, h, b);
                "hello from the fake server"
            }),
        )
        .route(
            "/big",
            any(move |uri: Uri, h: HeaderMap, b: Bytes| async move {
                r2(uri, h, b);
                "x".repeat(64 << 10)
            }),
        )
        .route(
            "/slow",
            any(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "late"
            }),
        )
        .route(
            "/services/{*rest}",
            post(move |uri: Uri, h: HeaderMap, b: Bytes| async move {
                r3(uri, h, b);
                (StatusCode::OK, "ok")
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_action_reaches_only_what_its_allowlist_names_and_every_request_is_recorded() {
    let (port, seen) = fake_server().await;
    let mut config = RuntimeConfig::default();
    config.outbound.max_requests = 3;
    config.outbound.max_response_bytes = 16 << 10;
    let runtime = runtime_with(config, Arc::new(MemoryDatastore::default()));
    let load = |reference: &str, hosts: Vec<String>, timeout_ms: u64| PluginSpec {
        allowed_outbound_hosts: hosts,
        limits: Some(Limits {
            timeout: Duration::from_millis(timeout_ms),
            memory_bytes: 64 << 20,
        }),
        ..PluginSpec::new(reference, PluginKind::Action, component("http_probe"))
    };
    for spec in [
        load(
            "t.allowed",
            vec![format!("http://127.0.0.1:{port}")],
            10_000,
        ),
        load("t.named", vec![format!("http://localhost:{port}")], 10_000),
        load(
            "t.other_port",
            vec![format!("http://127.0.0.1:{}", port.wrapping_add(1))],
            10_000,
        ),
        load("t.wildcard", vec!["http://*.localhost:*".into()], 10_000),
        load("t.nothing", Vec::new(), 10_000),
        load("t.short", vec![format!("http://127.0.0.1:{port}")], 1_500),
    ] {
        runtime.load(spec).await.unwrap();
    }
    let call = |reference: &'static str, params: Value| {
        let runtime = Arc::clone(&runtime);
        async move {
            runtime
                .run_action(reference, &params.to_string(), ActionContext::default())
                .await
        }
    };

    // Allowed: the request arrives as sent, and the record has no query string.
    let url = format!("http://127.0.0.1:{port}/echo?token=abc");
    let ok = call(
        "t.allowed",
        json!({"method": "POST", "url": url, "body": {"a": 1}, "headers": {"x-probe": "1"}}),
    )
    .await;
    let out = ok.result.expect("allowed request succeeds");
    assert_eq!(out["status"], 200);
    assert_eq!(out["body"], "hello from the fake server");
    let first = seen.lock().unwrap()[0].clone();
    assert_eq!(first.path, "/echo");
    assert_eq!(first.body, r#"{"a":1}"#);
    assert_eq!(first.headers["x-probe"], "1");
    assert_eq!(ok.outbound.len(), 1);
    let record = serde_json::to_value(&ok.outbound[0]).unwrap();
    assert_eq!(record["method"], "POST");
    assert_eq!(record["url"], format!("http://127.0.0.1:{port}/echo"));
    assert_eq!(record["status"], 200);
    assert_eq!(record["response_bytes"], 26);

    // `localhost` named explicitly may reach loopback.
    let named = call(
        "t.named",
        json!({"url": format!("http://localhost:{port}/echo")}),
    )
    .await;
    assert_eq!(named.result.unwrap()["status"], 200);

    // Refused before anything is sent: another port, no grant at all, and a wildcard name
    // that resolves to loopback without naming it.
    let before = seen.lock().unwrap().len();
    for (reference, url, expected) in [
        (
            "t.other_port",
            format!("http://127.0.0.1:{port}/echo"),
            "denied",
        ),
        (
            "t.nothing",
            format!("http://127.0.0.1:{port}/echo"),
            "denied",
        ),
        (
            "t.wildcard",
            format!("http://api.localhost:{port}/echo"),
            "denied",
        ),
    ] {
        let report = call(reference, json!({ "url": url })).await;
        let err = report.result.unwrap_err().to_string();
        assert!(
            err.contains("upstream") && err.contains(expected),
            "{reference}: {err}"
        );
        assert_eq!(report.outbound.len(), 1, "{reference}");
        let error = report.outbound[0].error.clone().unwrap_or_default();
        assert!(!error.is_empty(), "{reference}: the refusal is recorded");
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        before,
        "nothing reached the server"
    );

    // Caps: the fourth request of a call is refused; 64 KiB is over a 16 KiB response budget.
    let many = call(
        "t.allowed",
        json!({"url": format!("http://127.0.0.1:{port}/echo"), "count": 4}),
    )
    .await;
    let err = many.result.unwrap_err().to_string();
    assert!(err.contains("denied"), "{err}");
    assert_eq!(many.outbound.len(), 4, "{:?}", many.outbound);
    assert!(
        many.outbound[3].error.as_deref().unwrap().contains("limit"),
        "{:?}",
        many.outbound[3]
    );
    let big = call(
        "t.allowed",
        json!({"url": format!("http://127.0.0.1:{port}/big")}),
    )
    .await;
    let err = big.result.unwrap_err().to_string();
    assert!(
        err.to_lowercase().contains("size") || err.contains("too large"),
        "{err}"
    );

    // A server that never answers is cut before the call's deadline: the plugin sees an HTTP
    // error, not a timeout of the whole call.
    let slow = call(
        "t.short",
        json!({"url": format!("http://127.0.0.1:{port}/slow")}),
    )
    .await;
    let err = slow.result.unwrap_err();
    assert!(!err.is_timeout(), "{err}");
    assert!(err.to_string().contains("upstream"), "{err}");
    assert!(
        slow.elapsed < Duration::from_millis(1_500),
        "{:?}",
        slow.elapsed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slack_example_posts_with_a_secret_url_that_appears_nowhere() {
    let (port, seen) = fake_server().await;
    let server = TestServer::builder().examples().start().await;
    let secret = "T0001/B0002/XXXXsecretXXXXtoken";
    let packs = server.dir.path().join("packs");
    // The example allows https://hooks.slack.com; this test's fake Slack is local.
    let action = packs.join("slack/actions/post_message.yaml");
    let yaml = std::fs::read_to_string(&action).unwrap().replace(
        "\"https://hooks.slack.com\"",
        &format!("\"http://127.0.0.1:{port}\""),
    );
    std::fs::write(&action, yaml).unwrap();
    std::fs::write(
        server.dir.path().join("configs/slack.yaml"),
        format!(
            "webhook_url: \"http://127.0.0.1:{port}/services/{secret}\"\nusername: deploybot\n"
        ),
    )
    .unwrap();

    // TestServer does not watch the packs folder: reload as `stormhook plugin reload` does.
    let reload = server
        .client()
        .post(server.url("/api/v1/plugins/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200);
    let done = eventually(Duration::from_secs(20), "the slack action to post", async || {
        let resp = server
            .client()
            .post(server.url("/api/v1/executions?wait=10"))
            .json(&json!({"action": "slack.post_message", "parameters": {"text": "deployed 1.2.3", "channel": "#ops"}}))
            .send()
            .await
            .unwrap();
        let e: Value = resp.json().await.unwrap();
        if e["status"] == "succeeded" {
            Ok(e)
        } else {
            Err(e["result"].to_string())
        }
    })
    .await;
    assert_eq!(done["result"]["result"]["ok"], true, "{done}");

    let got = seen
        .lock()
        .unwrap()
        .last()
        .cloned()
        .expect("fake Slack got the post");
    assert_eq!(got.path, format!("/services/{secret}"));
    assert_eq!(got.headers["content-type"], "application/json");
    let body: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(
        body,
        json!({"text": "deployed 1.2.3", "channel": "#ops", "username": "deploybot"})
    );

    // The URL's secret part is nowhere the server shows it: the execution (its http record
    // included), the execution list, the config API, the action trigger instance.
    let id = done["id"].as_str().unwrap();
    let record = &done["result"]["http"][0];
    assert_eq!(record["status"], 200, "{done}");
    // The whole webhook URL is the secret, so the record shows the mask in its place.
    assert_eq!(record["url"], "********", "{record}");
    assert_eq!(record["method"], "POST");
    for path in [
        format!("/api/v1/executions/{id}"),
        "/api/v1/executions".to_owned(),
        "/api/v1/configs/slack".to_owned(),
        "/api/v1/configs".to_owned(),
        "/api/v1/triggerinstances".to_owned(),
    ] {
        let text = server
            .client()
            .get(server.url(&path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            !text.contains("XXXXsecretXXXX"),
            "{path} shows the secret: {text}"
        );
    }
    let config = server.get_json("/api/v1/configs/slack").await;
    assert!(config.to_string().contains("********"), "{config}");
}
