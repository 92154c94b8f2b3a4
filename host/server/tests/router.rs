//! StackStorm's routing conventions, at the router: `router(state).oneshot(request)`, with no
//! socket. The application is started through the composition root (`Stormhook::start`) over
//! a temporary SQLite store and an empty packs folder.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use stormhook_server::{Config, Settings, Stormhook};
use stormhook_storage::Store;
use tower::ServiceExt as _;

struct App {
    app: Stormhook,
    key: String,
    _dir: tempfile::TempDir,
}

async fn app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        stormhook_storage::sqlite::SqliteStore::open(&dir.path().join("stormhook.db"))
            .await
            .unwrap(),
    );
    let packs_dir = dir.path().join("packs");
    std::fs::create_dir_all(&packs_dir).unwrap();
    let app = Stormhook::start(Config {
        automation: stormhook_automation::Settings {
            store,
            packs_dir,
            runtime: stormhook_runtime::RuntimeConfig {
                max_instances: 4,
                ..Default::default()
            },
            http_policy: Default::default(),
            core_local: false,
            watch: false,
            ingest_queue: 16,
            retention: stormhook_automation::retention::Retention::keep_forever(),
            configs_dir: None,
        },
        htpasswd: None,
        token_ttl: std::time::Duration::from_secs(60),
    })
    .await
    .unwrap();
    let (_, key) = app
        .auth
        .create_api_key("admin", serde_json::json!({}))
        .await
        .unwrap();
    App {
        app,
        key,
        _dir: dir,
    }
}

impl App {
    async fn send(&self, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let router = stormhook_server::router(self.app.state(Settings::default()));
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, body.to_vec())
    }
}

fn request(method: Method, path: &str) -> axum::http::request::Builder {
    Request::builder().method(method).uri(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_methods_get_stackstorms_404_before_authentication() {
    let app = app().await;
    for (method, path) in [
        (Method::GET, "/api/v1/nope"),
        (Method::DELETE, "/api/v1/plugins"),
        (Method::PUT, "/v1/webhooks"),
        (Method::GET, "/v1/webhooks/a/b"),
    ] {
        let (status, _, body) = app
            .send(request(method.clone(), path).body(Body::empty()).unwrap())
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            serde_json::json!({"faultstring": "The resource could not be found."})
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_routes_need_a_credential_under_both_prefixes_and_ignore_one_trailing_slash() {
    let app = app().await;
    for path in ["/api/v1/webhooks", "/v1/webhooks", "/api/v1/webhooks/"] {
        let (status, _, body) = app
            .send(request(Method::GET, path).body(Body::empty()).unwrap())
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(body["faultstring"].as_str().is_some(), "{body}");
        let (status, _, body) = app
            .send(
                request(Method::GET, path)
                    .header("St2-Api-Key", &app.key)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(body, b"[]", "{path}: no rule registers a webhook");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_answers_cors_without_credentials_and_request_ids_are_echoed() {
    let app = app().await;
    let (status, headers, _) = app
        .send(
            request(Method::OPTIONS, "/api/v1/webhooks")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["access-control-allow-methods"],
        "GET,POST,PUT,DELETE,OPTIONS"
    );
    let (_, headers, _) = app
        .send(
            request(Method::GET, "/api/v1/webhooks")
                .header("St2-Api-Key", &app.key)
                .header("X-Request-ID", "req-42")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(headers["x-request-id"], "req-42");
    let (_, headers, _) = app
        .send(
            request(Method::GET, "/api/v1/webhooks")
                .header("St2-Api-Key", &app.key)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(headers["x-request-id"].len(), 36, "a uuid is generated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_application_joins_its_tasks() {
    let app = app().await;
    let (status, _, _) = app
        .send(
            request(Method::GET, "/api/v1/executions")
                .header("St2-Api-Key", &app.key)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // shutdown() returns once the engine, the executor's worker and recorder have ended; a
    // task that ignored the stop signal would hold it past the timeout.
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        app.app.automation.shutdown(),
    )
    .await
    .expect("the automation domain stops and joins its tasks");
}
