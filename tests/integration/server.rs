//! The HTTP surface of issue 2: `GET /api/v1/plugins`, `POST /api/v1/plugins/reload`, the `/v1`
//! prefix, trailing slashes and StackStorm's 404, against a real server on a free port.

use std::sync::Arc;

use stormhook::packs::PackManager;
use stormhook::server::{self, AppState};
use stormhook_runtime::RuntimeConfig;
use stormhook_tests::{install_examples, runtime};

struct Running {
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    install_examples(dir.path());
    let packs = Arc::new(PackManager::new(
        dir.path().to_owned(),
        runtime(RuntimeConfig::default()),
    ));
    packs.reload().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::serve(listener, AppState { packs }, async {
        let _ = stopped.await;
    }));
    Running {
        base,
        stop: Some(stop),
        _dir: dir,
    }
}

#[tokio::test]
async fn plugins_are_listed_under_both_prefixes_with_version_and_load_time() {
    let server = start().await;
    let client = reqwest::Client::new();
    for path in ["/api/v1/plugins", "/v1/plugins", "/api/v1/plugins/"] {
        let resp = client
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
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
    let server = start().await;
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/plugins/reload", server.base))
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
async fn unknown_paths_and_methods_get_stackstorms_404() {
    let server = start().await;
    let client = reqwest::Client::new();
    for request in [
        client.get(format!("{}/api/v1/nope", server.base)),
        client.delete(format!("{}/api/v1/plugins", server.base)),
    ] {
        let resp = request.send().await.unwrap();
        assert_eq!(resp.status(), 404);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(
            body,
            serde_json::json!({"faultstring": "The resource could not be found."})
        );
    }
}
