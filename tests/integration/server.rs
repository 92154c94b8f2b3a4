//! The plugin endpoints and StackStorm's routing conventions against a real server. (The
//! conventions that need no socket are tested at the router: `host/server/tests/router.rs`.)

use stormhook_tests::TestServer;

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
