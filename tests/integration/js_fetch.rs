//! A JavaScript action (`plugins/js/fetch_probe`, built with componentize-js) calls a local
//! server with `fetch`, through the host's `wasi:http/outgoing-handler` and its allowlist.
//!
//! The component is built here, not by the build script: `npm ci` (from the package's
//! `package-lock.json`) into `<target>/js-plugins/node-<lock hash>/`, once per lock file, then
//! `node build.mjs` into `<target>/js-plugins/fetch_probe-<inputs hash>.wasm`, once per change
//! of the lock file, the JavaScript, the build script or the WIT package. Both are written to a
//! temporary name and renamed, so concurrent test runs sharing the target folder never see half
//! of one.
//!
//! A machine without `node` or `npm`, or whose `npm ci` fails (no registry), skips these tests
//! loudly, unless `STORMHOOK_REQUIRE_JS` is set (`.ci/run` sets it: CI must run them). A failed
//! `node build.mjs` always fails: that is a broken action, not a missing tool.

use std::hash::{DefaultHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{Value, json};
use stormhook_runtime::{
    ActionContext, GuestErrorKind, LoadLimits, PluginError, PluginKind, PluginSpec, Runtime,
    RuntimeConfig,
};
use stormhook_tests::{plugins_dir, runtime};

/// The action's package: `package.json`, `package-lock.json`, `build.mjs`, `fetch_probe.js`.
const PACKAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/js/fetch_probe");
/// The WIT package the action is built against.
const WIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../wit");
/// The files copied next to `node_modules` to build.
const SOURCES: [&str; 2] = ["build.mjs", "fetch_probe.js"];
const MANIFESTS: [&str; 2] = ["package.json", "package-lock.json"];

/// The built component, or why it cannot be built on this machine.
static COMPONENT: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The built `fetch_probe` component, or `None` (after a loud skip line) when this machine
/// cannot build it and `STORMHOOK_REQUIRE_JS` is not set.
fn fetch_probe() -> Option<PathBuf> {
    match COMPONENT.get_or_init(build) {
        Ok(path) => Some(path.clone()),
        Err(reason) => {
            assert!(
                std::env::var_os("STORMHOOK_REQUIRE_JS").is_none(),
                "{reason}, and STORMHOOK_REQUIRE_JS says the JavaScript action tests must run"
            );
            eprintln!("\n!!! SKIPPED: the JavaScript fetch action: {reason} !!!\n");
            None
        }
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A hash of the files, names included. A cache key only: a change of hasher between Rust
/// releases costs one rebuild.
fn hash_files(files: &[PathBuf]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for file in files {
        hasher.write(file.file_name().unwrap().as_encoded_bytes());
        hasher.write(&read(file));
    }
    hasher.finish()
}

/// Runs `command`; `Err` holds its output when it fails to start or exits non-zero.
fn run(command: &mut Command) -> Result<String, String> {
    let shown = format!("{command:?}");
    match command.output() {
        Err(e) => Err(format!("{shown} did not start: {e}")),
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => Err(format!(
            "{shown} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

/// A name no other process uses at the same time.
fn unique(prefix: &Path) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let mut name = prefix.as_os_str().to_owned();
    name.push(format!(".tmp-{}-{nanos}", std::process::id()));
    PathBuf::from(name)
}

fn build() -> Result<PathBuf, String> {
    let package = Path::new(PACKAGE);
    let lock = hash_files(&MANIFESTS.map(|f| package.join(f)));
    let mut inputs: Vec<PathBuf> = MANIFESTS
        .iter()
        .chain(&SOURCES)
        .map(|f| package.join(f))
        .collect();
    let mut wit: Vec<PathBuf> = std::fs::read_dir(WIT)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wit"))
        .collect();
    wit.sort();
    inputs.extend(wit);
    let target = plugins_dir().join("../../..");
    let root = target.canonicalize().unwrap_or(target).join("js-plugins");
    std::fs::create_dir_all(&root).unwrap();
    let wasm = root.join(format!("fetch_probe-{:016x}.wasm", hash_files(&inputs)));
    if wasm.exists() {
        return Ok(wasm);
    }

    for tool in ["node", "npm"] {
        run(Command::new(tool).arg("--version"))
            .map_err(|e| format!("`{tool}` is not usable ({e})"))?;
    }

    // Dependencies, once per lock file. The folder is complete once it has its final name.
    let modules = root.join(format!("node-{lock:016x}"));
    if !modules.exists() {
        let temporary = unique(&modules);
        std::fs::create_dir_all(&temporary).unwrap();
        for file in MANIFESTS {
            std::fs::copy(package.join(file), temporary.join(file)).unwrap();
        }
        let started = Instant::now();
        let installed = run(Command::new("npm")
            .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
            .current_dir(&temporary));
        if let Err(e) = installed {
            let _ = std::fs::remove_dir_all(&temporary);
            return Err(format!("`npm ci` failed: {e}"));
        }
        eprintln!("npm ci: {:.1} s", started.elapsed().as_secs_f64());
        if std::fs::rename(&temporary, &modules).is_err() {
            // Another run finished first; use its folder.
            assert!(modules.exists(), "cannot rename {}", temporary.display());
            let _ = std::fs::remove_dir_all(&temporary);
        }
    }

    // The component, built in a folder inside the dependencies' one (so `node` finds them).
    let work = unique(&modules.join("build"));
    std::fs::create_dir_all(&work).unwrap();
    for file in SOURCES {
        std::fs::copy(package.join(file), work.join(file)).unwrap();
    }
    let output = unique(&wasm);
    let started = Instant::now();
    let built = run(Command::new("node")
        .arg(work.join("build.mjs"))
        .arg("--wit")
        .arg(WIT)
        .arg("--out")
        .arg(&output)
        .current_dir(&work));
    let _ = std::fs::remove_dir_all(&work);
    let said = built.unwrap_or_else(|e| panic!("building the JavaScript action: {e}"));
    eprintln!(
        "componentize-js: {:.1} s, {}",
        started.elapsed().as_secs_f64(),
        said.trim()
    );
    std::fs::rename(&output, &wasm).unwrap();
    Ok(wasm)
}

/// What the local server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    content_type: Option<String>,
    execution: Option<String>,
    body: String,
}

/// A local HTTP server on 127.0.0.1 that records every request and answers
/// `201 hello <method> <path>: <body>`.
struct Upstream {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    async fn start() -> Self {
        async fn answer(
            State(seen): State<Arc<Mutex<Vec<Seen>>>>,
            method: Method,
            uri: Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> (StatusCode, String) {
            let header = |name: &str| {
                headers
                    .get(name)
                    .map(|v| v.to_str().unwrap_or("?").to_owned())
            };
            let body = String::from_utf8_lossy(&body).into_owned();
            let reply = format!("hello {method} {}: {body}", uri.path());
            seen.lock().unwrap().push(Seen {
                method,
                path: uri.path().to_owned(),
                content_type: header("content-type"),
                execution: header("x-stormhook-execution"),
                body,
            });
            (StatusCode::CREATED, reply)
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&seen));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { port, seen, task }
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Loads the component as `js.fetch_probe` allowed to reach `allowed`, and says how long the
/// load (compiling the component, or reading it from the compile cache) took.
///
/// The component holds a whole JavaScript engine (about 12 MB), so the first compile of each
/// build of it takes far longer than a Rust plugin's: the compile limit is raised for it.
async fn load(path: &Path, allowed: Vec<String>) -> Arc<Runtime> {
    let rt = runtime(RuntimeConfig {
        load: LoadLimits {
            compile_timeout: Duration::from_secs(600),
            ..LoadLimits::default()
        },
        ..RuntimeConfig::default()
    });
    let started = Instant::now();
    rt.load(PluginSpec {
        allowed_outbound_hosts: allowed,
        ..PluginSpec::new("js.fetch_probe", PluginKind::Action, path)
    })
    .await
    .unwrap_or_else(|e| panic!("loading the JavaScript action: {e}"));
    eprintln!(
        "loading {} ({} bytes): {:.1} s",
        path.display(),
        std::fs::metadata(path).unwrap().len(),
        started.elapsed().as_secs_f64()
    );
    rt
}

fn context(execution_id: &str) -> ActionContext {
    ActionContext {
        execution_id: execution_id.to_owned(),
        ..ActionContext::default()
    }
}

/// The guest's typed error of a failed call.
fn guest_error(result: Result<Value, PluginError>) -> (GuestErrorKind, String) {
    match result {
        Err(PluginError::Guest { error, .. }) => (error.kind, error.message),
        other => panic!("expected the plugin's typed error, got {other:?}"),
    }
}

#[tokio::test]
async fn javascript_action_posts_with_fetch_to_an_allowed_local_server() {
    let Some(path) = fetch_probe() else { return };
    let upstream = Upstream::start().await;
    let rt = load(&path, vec![upstream.origin()]).await;

    let params = json!({
        "url": format!("{}/hooks/deploy?attempt=1", upstream.origin()),
        "method": "POST",
        "body": {"service": "billing", "version": 42},
    });
    let started = Instant::now();
    let report = rt
        .run_action("js.fetch_probe", &params.to_string(), context("exec-post"))
        .await;
    eprintln!("POST call: {:.3} s", started.elapsed().as_secs_f64());
    let result = report
        .result
        .unwrap_or_else(|e| panic!("{e}\nstderr: {}", report.captured.stderr));

    let seen = upstream.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let request = &seen[0];
    assert_eq!(request.method, Method::POST);
    assert_eq!(request.path, "/hooks/deploy");
    assert_eq!(request.content_type.as_deref(), Some("application/json"));
    assert_eq!(request.execution.as_deref(), Some("exec-post"));
    let sent: Value = serde_json::from_str(&request.body).unwrap();
    assert_eq!(sent, json!({"service": "billing", "version": 42}));

    assert_eq!(
        result,
        json!({
            "status": 201,
            "body": format!("hello POST /hooks/deploy: {}", request.body),
        })
    );

    // A second call on the same plugin (a fresh instance) works too, with GET.
    let params = json!({"url": format!("{}/status", upstream.origin()), "method": "GET"});
    let report = rt
        .run_action("js.fetch_probe", &params.to_string(), context("exec-get"))
        .await;
    let result = report
        .result
        .unwrap_or_else(|e| panic!("{e}\nstderr: {}", report.captured.stderr));
    assert_eq!(
        result,
        json!({"status": 201, "body": "hello GET /status: "})
    );
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1].method, Method::GET);
    assert_eq!(seen[1].path, "/status");
    assert_eq!(seen[1].body, "");
}

#[tokio::test]
async fn javascript_action_cannot_reach_a_server_it_was_not_granted() {
    let Some(path) = fetch_probe() else { return };
    let upstream = Upstream::start().await;
    // Granted another port only.
    let rt = load(&path, vec!["http://127.0.0.1:1".to_owned()]).await;
    let params = json!({"url": format!("{}/secret", upstream.origin()), "method": "GET"});
    let report = rt
        .run_action(
            "js.fetch_probe",
            &params.to_string(),
            context("exec-denied"),
        )
        .await;
    let (kind, message) = guest_error(report.result);
    assert_eq!(kind, GuestErrorKind::Upstream, "{message}");
    assert!(message.contains("/secret"), "{message}");
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
}

#[tokio::test]
async fn javascript_action_errors_are_the_wit_error_variant() {
    let Some(path) = fetch_probe() else { return };
    // Granted a port where nothing listens.
    let rt = load(&path, vec!["http://127.0.0.1:1".to_owned()]).await;
    for (params, wanted) in [
        (json!({}), "`url` (a string) is required"),
        (
            json!({"url": "http://127.0.0.1:1/", "method": "DELETE"}),
            "`method` must be GET or POST, not \"DELETE\"",
        ),
    ] {
        let report = rt
            .run_action("js.fetch_probe", &params.to_string(), context("exec-bad"))
            .await;
        let (kind, message) = guest_error(report.result);
        assert_eq!(kind, GuestErrorKind::InvalidInput, "{message}");
        assert_eq!(message, wanted);
    }
    // Nothing listens on port 1: an upstream error, in time.
    let started = Instant::now();
    let params = json!({"url": "http://127.0.0.1:1/", "method": "GET"});
    let report = rt
        .run_action("js.fetch_probe", &params.to_string(), context("exec-down"))
        .await;
    let (kind, message) = guest_error(report.result);
    assert_eq!(kind, GuestErrorKind::Upstream, "{message}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
