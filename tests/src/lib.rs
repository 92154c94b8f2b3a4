//! Test support for Stormhook: where the built plugins are, a shared compile cache, runtimes and
//! pack folders set up the same way in every test.
//!
//! Fixture components are built once per build by this crate's build script (the whole
//! `plugins/` workspace, in release mode) and compiled by wasmtime once per run at most: every runtime made
//! here shares one on-disk cache of precompiled code.

include!(concat!(env!("OUT_DIR"), "/fixtures.rs"));

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stormhook_runtime::datastore::MemoryDatastore;
use stormhook_runtime::{PluginKind, PluginSpec, Runtime, RuntimeConfig};

/// The folder holding every built component (`<name>.wasm`).
///
/// # Panics
///
/// When the host was built with `STORMHOOK_SKIP_PLUGINS` (there are no components to test).
pub fn plugins_dir() -> PathBuf {
    let dir =
        FIXTURES_DIR.expect("the tests need the plugins: build without STORMHOOK_SKIP_PLUGINS");
    PathBuf::from(dir)
}

/// The built component `<name>.wasm`.
pub fn component(name: &str) -> PathBuf {
    let path = plugins_dir().join(format!("{name}.wasm"));
    assert!(path.exists(), "no built component {}", path.display());
    path
}

/// The compile cache shared by all tests of this build.
pub fn cache_dir() -> PathBuf {
    plugins_dir().join("../../../stormhook-test-cache")
}

/// A runtime configured like the server's, with the shared cache and an in-memory datastore.
pub fn runtime(config: RuntimeConfig) -> Arc<Runtime> {
    runtime_with(config, Arc::new(MemoryDatastore::default()))
}

/// A runtime configured like the server's, with the shared cache and this datastore.
pub fn runtime_with(
    config: RuntimeConfig,
    datastore: Arc<dyn stormhook_runtime::datastore::Datastore>,
) -> Arc<Runtime> {
    Arc::new(Runtime::new(test_runtime_config(config), datastore).expect("runtime starts"))
}

/// `config` with the tests' shared compile cache and at most 64 instance slots.
///
/// The guest pool keeps its nice value but not the idle scheduling class, unless
/// `STORMHOOK_TEST_GUEST_IDLE` is set (the fairness bench sets it): many tests assert that a
/// spinning guest stops near its deadline, and an idle-class thread on a CI machine whose
/// CPUs the other tests keep busy is checked only when a CPU frees.
pub fn test_runtime_config(config: RuntimeConfig) -> RuntimeConfig {
    RuntimeConfig {
        cache_dir: Some(cache_dir()),
        max_instances: config.max_instances.min(64),
        fairness: stormhook_runtime::Fairness {
            background_idle: std::env::var_os("STORMHOOK_TEST_GUEST_IDLE").is_some(),
            ..config.fairness
        },
        ..config
    }
}

/// Loads fixture `<name>.wasm` as `test.<name>` of the given kind.
pub async fn load_fixture(runtime: &Arc<Runtime>, name: &str, kind: PluginKind) -> String {
    let reference = format!("test.{name}");
    runtime
        .load(PluginSpec::new(reference.clone(), kind, component(name)))
        .await
        .unwrap_or_else(|e| panic!("loading fixture {name}: {e}"));
    reference
}

/// A WebAssembly component holding one core module with `functions` functions of about
/// `ops` instructions each, and `padding` bytes of custom section: a component whose
/// compile time and size a test chooses. It implements no world (linking it fails).
pub fn generated_component(functions: u32, ops: u32, padding: usize) -> Vec<u8> {
    use wasm_encoder::{
        CodeSection, Component, CustomSection, Function, FunctionSection, Instruction, Module,
        ModuleSection, TypeSection, ValType,
    };
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32], [ValType::I32]);
    module.section(&types);
    let mut declared = FunctionSection::new();
    for _ in 0..functions {
        declared.function(0);
    }
    module.section(&declared);
    let mut code = CodeSection::new();
    for f in 0..functions {
        let mut body = Function::new([]);
        body.instruction(&Instruction::LocalGet(0));
        for k in 0..ops {
            body.instruction(&Instruction::I32Const((f ^ k) as i32));
            body.instruction(&if k % 2 == 0 {
                Instruction::I32Add
            } else {
                Instruction::I32Xor
            });
        }
        body.instruction(&Instruction::End);
        code.function(&body);
    }
    module.section(&code);
    let mut component = Component::new();
    component.section(&ModuleSection(&module));
    if padding > 0 {
        component.section(&CustomSection {
            name: "padding".into(),
            data: vec![0u8; padding].into(),
        });
    }
    component.finish()
}

/// The `.cwasm` files under a compile cache folder.
pub fn cached_files(cache: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![cache.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "cwasm") {
                found.push(path);
            }
        }
    }
    found
}

/// Copies the example packs, with their built components, into `dest`.
pub fn install_examples(dest: &Path) {
    let written = stormhook::examples::install(dest).expect("installing the example packs");
    assert!(written > 0, "the binary embeds no example packs");
}

/// A real server on `127.0.0.1:<free port>` over a temporary data directory, stopped on drop.
pub struct TestServer {
    /// `http://127.0.0.1:<port>` (or `https://localhost:<port>` with TLS).
    pub base: String,
    /// An API key the server accepts (user `admin`).
    pub key: String,
    /// The store, for looking behind the API.
    pub store: Arc<stormhook_storage::sqlite::SqliteStore>,
    /// The packs of the server.
    pub packs: Arc<stormhook_automation::packs::PackManager>,
    /// The data directory (holds `packs/t/rules` with the rules given to the builder).
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Builds a [`TestServer`].
#[derive(Default)]
pub struct TestServerBuilder {
    rules: Vec<(String, String)>,
    settings: Option<stormhook_server::Settings>,
    limits: Option<stormhook_server::ConnectionLimits>,
    tls: Option<(PathBuf, PathBuf)>,
    htpasswd: Option<String>,
    token_ttl: Option<std::time::Duration>,
    examples: bool,
    actions: Vec<(String, String, String)>,
    rule_components: Vec<String>,
    local_disabled: bool,
    http_policy: Option<stormhook_automation::actions::http::HttpPolicy>,
    parent: Option<PathBuf>,
    pack_config: (Option<String>, Option<String>),
    preload: Vec<stormhook_storage::Execution>,
}

/// A rule in pack `t` on webhook `url`.
pub fn webhook_rule(name: &str, url: &str) -> (String, String) {
    let yaml = format!(
        "name: {name}\ntrigger:\n  type: core.st2.webhook\n  parameters:\n    url: \"{url}\"\naction:\n  ref: core.noop\n"
    );
    (name.to_owned(), yaml)
}

impl TestServerBuilder {
    /// Adds rule files `(name, yaml)` to pack `t`.
    pub fn rules(mut self, rules: impl IntoIterator<Item = (String, String)>) -> Self {
        self.rules.extend(rules);
        self
    }

    /// Request settings.
    pub fn settings(mut self, settings: stormhook_server::Settings) -> Self {
        self.settings = Some(settings);
        self
    }

    /// Connection limits.
    pub fn limits(mut self, limits: stormhook_server::ConnectionLimits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Serves HTTPS with this PEM certificate and key.
    pub fn tls(mut self, cert: PathBuf, key: PathBuf) -> Self {
        self.tls = Some((cert, key));
        self
    }

    /// htpasswd file contents.
    pub fn htpasswd(mut self, text: &str) -> Self {
        self.htpasswd = Some(text.to_owned());
        self
    }

    /// Longest token lifetime.
    pub fn token_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.token_ttl = Some(ttl);
        self
    }

    /// Adds WASM action `t.<name>` running fixture `<fixture>.wasm`; `extra` is more YAML for
    /// its metadata (parameters, limits, datastore).
    pub fn action(mut self, name: &str, fixture: &str, extra: &str) -> Self {
        self.actions
            .push((name.to_owned(), fixture.to_owned(), extra.to_owned()));
        self
    }

    /// Copies fixture `<fixture>.wasm` next to the rules (`<packs>/t/rules/`), for a rule whose
    /// `wasm.entry_point` names it.
    pub fn rule_component(mut self, fixture: &str) -> Self {
        self.rule_components.push(fixture.to_owned());
        self
    }

    /// Disables `core.local`, as `--disable-core-local` does.
    pub fn without_core_local(mut self) -> Self {
        self.local_disabled = true;
        self
    }

    /// `core.http` connects only where `policy` allows.
    pub fn http_policy(mut self, policy: stormhook_automation::actions::http::HttpPolicy) -> Self {
        self.http_policy = Some(policy);
        self
    }

    /// Makes the data directory inside `parent` (a filesystem the test controls).
    pub fn data_dir_in(mut self, parent: &Path) -> Self {
        self.parent = Some(parent.to_owned());
        self
    }

    /// Gives pack `t` a `config.schema.yaml` and a values file (`<data-dir>/configs/t.yaml`),
    /// each when given.
    pub fn pack_config(mut self, schema: Option<&str>, values: Option<&str>) -> Self {
        self.pack_config = (schema.map(str::to_owned), values.map(str::to_owned));
        self
    }

    /// Stores these executions before the server starts (as a stop left them).
    pub fn preload(mut self, executions: Vec<stormhook_storage::Execution>) -> Self {
        self.preload = executions;
        self
    }

    /// Installs the example packs too.
    pub fn examples(mut self) -> Self {
        self.examples = true;
        self
    }

    /// Starts the server.
    pub async fn start(self) -> TestServer {
        let dir = match &self.parent {
            Some(parent) => tempfile::tempdir_in(parent).unwrap(),
            None => tempfile::tempdir().unwrap(),
        };
        let packs_dir = dir.path().join("packs");
        let rules_dir = packs_dir.join("t/rules");
        std::fs::create_dir_all(&rules_dir).unwrap();
        for (name, yaml) in &self.rules {
            std::fs::write(rules_dir.join(format!("{name}.yaml")), yaml).unwrap();
        }
        for fixture in &self.rule_components {
            std::fs::copy(
                component(fixture),
                rules_dir.join(format!("{fixture}.wasm")),
            )
            .unwrap();
        }
        if self.examples {
            install_examples(&packs_dir);
        }
        let actions_dir = packs_dir.join("t/actions");
        std::fs::create_dir_all(&actions_dir).unwrap();
        let configs_dir = dir.path().join("configs");
        std::fs::create_dir_all(&configs_dir).unwrap();
        if let Some(schema) = &self.pack_config.0 {
            std::fs::write(packs_dir.join("t/config.schema.yaml"), schema).unwrap();
        }
        if let Some(values) = &self.pack_config.1 {
            std::fs::write(configs_dir.join("t.yaml"), values).unwrap();
        }
        for (name, fixture, extra) in &self.actions {
            std::fs::copy(
                component(fixture),
                actions_dir.join(format!("{fixture}.wasm")),
            )
            .unwrap();
            std::fs::write(
                actions_dir.join(format!("{name}.yaml")),
                format!("name: {name}\nrunner_type: wasm\nentry_point: {fixture}.wasm\n{extra}\n"),
            )
            .unwrap();
        }
        let store = Arc::new(
            stormhook_storage::sqlite::SqliteStore::open(&dir.path().join("stormhook.db"))
                .await
                .unwrap(),
        );
        for execution in &self.preload {
            stormhook_storage::Store::insert_execution(store.as_ref(), execution, None)
                .await
                .unwrap();
        }
        let htpasswd = self.htpasswd.map(|text| {
            let path = dir.path().join("htpasswd");
            std::fs::write(&path, text).unwrap();
            path
        });
        let app = stormhook_server::Stormhook::start(stormhook_server::Config {
            automation: stormhook_automation::Settings {
                store: store.clone(),
                packs_dir,
                configs_dir: Some(configs_dir),
                runtime: test_runtime_config(RuntimeConfig::default()),
                http_policy: self.http_policy.unwrap_or_default(),
                core_local: !self.local_disabled,
                watch: false,
                ingest_queue: stormhook_automation::app::INGEST_QUEUE,
                retention: stormhook_automation::retention::Retention::keep_forever(),
            },
            htpasswd,
            token_ttl: self
                .token_ttl
                .unwrap_or(std::time::Duration::from_secs(86_400)),
        })
        .await
        .expect("the application starts");
        let report = app.automation.plugins_loaded().await;
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let (_, key) = app
            .auth
            .create_api_key("admin", serde_json::json!({}))
            .await
            .unwrap();
        let packs = Arc::clone(&app.automation.packs);

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tls = self
            .tls
            .map(|(cert, key)| stormhook_server::listener::tls_config(&cert, &key).unwrap());
        let base = if tls.is_some() {
            format!("https://localhost:{port}")
        } else {
            format!("http://127.0.0.1:{port}")
        };
        let settings = stormhook_server::Settings {
            api_url: base.clone(),
            ..self.settings.unwrap_or_default()
        };
        let serving = stormhook_server::Serving {
            settings,
            limits: self.limits.unwrap_or_default(),
            tls,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.serve(listener, serving, async {
            let _ = stopped.await;
        }));
        TestServer {
            base,
            key,
            store,
            packs,
            dir,
            stop: Some(stop),
        }
    }
}

impl TestServer {
    /// A builder.
    pub fn builder() -> TestServerBuilder {
        TestServerBuilder::default()
    }

    /// `base + path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path` with the server's API key, which must answer 200; its JSON body.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let resp = self.client().get(self.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "GET {path}");
        resp.json().await.unwrap()
    }

    /// A client that sends the server's API key.
    pub fn client(&self) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("St2-Api-Key", self.key.parse().unwrap());
        reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap()
    }
}

/// The `faultstring` of an error response (empty when there is none).
pub async fn faultstring(resp: reqwest::Response) -> String {
    let body: serde_json::Value = resp.json().await.unwrap();
    body["faultstring"].as_str().unwrap_or_default().to_owned()
}

/// How often [`eventually`] asks.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Waits for something the system does on its own time: asks `check` every [`POLL_INTERVAL`]
/// until it answers `Ok`, and returns that value.
///
/// `check` answers `Err(state)` while the condition does not hold yet, `state` describing what
/// it saw (the list, the status, the log...). It is asked at least once, and asked again until
/// `within` has passed since the first ask.
///
/// ```ignore
/// let processed = eventually(Duration::from_secs(10), "the instance to be processed", async || {
///     let t = server.get_json(&path).await;
///     if t["status"] == "processed" { Ok(t) } else { Err(format!("status: {t}")) }
/// })
/// .await;
/// ```
///
/// # Panics
///
/// When `check` still answers `Err` once `within` has passed: the message names `what` and the
/// last state `check` described.
pub async fn eventually<T>(
    within: Duration,
    what: &str,
    check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    eventually_every(POLL_INTERVAL, within, what, check).await
}

/// [`eventually`], asking every `interval` instead (for a check that is slow or heavy, like
/// running the CLI, or one that must see a change within a few milliseconds).
///
/// # Panics
///
/// As [`eventually`].
pub async fn eventually_every<T>(
    interval: Duration,
    within: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let started = Instant::now();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) => {
                assert!(
                    started.elapsed() < within,
                    "gave up waiting for {what} after {within:?}; last seen: {last}"
                );
                tokio::time::sleep(interval).await;
            }
        }
    }
}
