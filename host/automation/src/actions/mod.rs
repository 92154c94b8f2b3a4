//! Actions and runner types (`docs/st2-api.md` §4.4 and §6.4): the built-in `core`
//! actions, the WASM actions of the pack folders, and the runners that execute them.
//!
//! # Layout
//!
//! - this module: the catalog ([`Catalog`]), the one dispatch over the runners
//!   ([`Catalog::run`]), a run's [`Outcome`], and the API shapes of actions and runner types.
//! - `builtin`: `core.noop` and `core.echo`, answered without a process.
//! - [`local`]: the `local-shell-cmd` runner (`core.local`).
//! - [`http`]: the `http-request` runner (`core.http`).
//! - `wasm`: the `wasm` runner (pack actions, through the plugin runtime).

use std::sync::Arc;

use serde_json::{Map, Value, json};
use stormhook_runtime::{PluginKind, PluginState};
use stormhook_storage::{Execution, ExecutionStatus};

use crate::packs::PackManager;

mod builtin;
pub mod http;
pub mod local;
mod wasm;

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The final status.
    pub status: ExecutionStatus,
    /// The result object.
    pub result: Value,
}

impl Outcome {
    /// A `failed` run with this result.
    pub fn failed(result: Value) -> Self {
        Self {
            status: ExecutionStatus::Failed,
            result,
        }
    }
}

/// The runner of pack actions.
pub const WASM_RUNNER: &str = "wasm";
/// The runner of `core.local` and `core.echo`.
pub const LOCAL_RUNNER: &str = "local-shell-cmd";
/// The runner of `core.http`.
pub const HTTP_RUNNER: &str = "http-request";
/// The runner of `core.noop`.
pub const NOOP_RUNNER: &str = "noop";

/// A runner type, as `GET /runnertypes` shows it.
#[derive(Debug, Clone)]
pub struct RunnerType {
    /// The name (`local-shell-cmd`, ...).
    pub name: &'static str,
    /// What it does.
    pub description: &'static str,
    /// Parameter schemas by name.
    pub parameters: Map<String, Value>,
    /// The result key the runner's main output is under.
    pub output_key: Option<&'static str>,
}

impl RunnerType {
    /// The API object.
    pub fn json(&self) -> Value {
        let mut v = json!({
            "id": derived_id(&format!("runner_type:{}", self.name)),
            "uid": format!("runner_type:{}", self.name),
            "name": self.name,
            "description": self.description,
            "enabled": true,
            "runner_package": self.name.replace('-', "_"),
            "runner_module": self.name.replace('-', "_"),
            "runner_parameters": self.parameters,
        });
        if let Some(key) = self.output_key {
            v["output_key"] = json!(key);
        }
        v
    }
}

fn params(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Every runner type Stormhook has, sorted by name (built once).
pub fn runner_types() -> &'static [RunnerType] {
    static RUNNERS: std::sync::LazyLock<Vec<RunnerType>> = std::sync::LazyLock::new(runners);
    &RUNNERS
}

fn runners() -> Vec<RunnerType> {
    vec![
        RunnerType {
            name: HTTP_RUNNER,
            description: "A runner for making HTTP requests.",
            parameters: params(json!({
                "url": {"type": "string", "description": "URL to the HTTP endpoint.", "required": true},
                "method": {"type": "string", "description": "HTTP method; GET, or POST when there is a body.",
                           "enum": ["HEAD", "GET", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH", "PURGE"]},
                "body": {"type": "string", "description": "Body to send with the request."},
                "headers": {"type": "object", "description": "HTTP headers for the request."},
                "params": {"type": "object", "description": "Query parameters."},
                "cookies": {"type": "object", "description": "Optional cookies to send with the request."},
                "username": {"type": "string", "description": "User name for basic authentication."},
                "password": {"type": "string", "description": "Password for basic authentication.", "secret": true},
                "timeout": {"type": "number", "description": "Timeout for the HTTP request, in seconds.", "default": 60},
                "allow_redirects": {"type": "boolean", "description": "Follow redirects.", "default": false},
                "verify_ssl_cert": {"type": "boolean", "description": "Verify the server's TLS certificate.", "default": true},
            })),
            output_key: Some("body"),
        },
        RunnerType {
            name: LOCAL_RUNNER,
            description: "A runner to execute local actions as a fixed user.",
            parameters: params(json!({
                "cmd": {"type": "string", "description": "Arbitrary Linux command to be executed on the host."},
                "cwd": {"type": "string", "description": "Working directory where the command will be executed in"},
                "env": {"type": "object", "description": "Environment variables which will be available to the command(e.g. key1=val1,key2=val2)"},
                "kwarg_op": {"type": "string", "description": "Operator to use in front of keyword args i.e. \"--\" or \"-\".", "default": "--"},
                "sudo": {"type": "boolean", "description": "The command will be executed with sudo.", "default": false},
                "sudo_password": {"type": "string", "description": "Sudo password. Stormhook does not run commands with sudo.", "secret": true},
                "timeout": {"type": "integer", "description": "Action timeout in seconds. Action will get killed if it doesn't finish in timeout seconds.", "default": 60},
            })),
            output_key: Some("stdout"),
        },
        RunnerType {
            name: NOOP_RUNNER,
            description: "A runner which does nothing.",
            parameters: Map::new(),
            output_key: None,
        },
        RunnerType {
            name: WASM_RUNNER,
            description: "Runs a WebAssembly component of a pack in a sandbox, with a deadline and a memory cap.",
            parameters: Map::new(),
            output_key: Some("result"),
        },
    ]
}

/// The runner type called `name`.
pub fn runner_type(name: &str) -> Option<&'static RunnerType> {
    runner_types().iter().find(|r| r.name == name)
}

/// One action, built in or from a pack.
#[derive(Debug, Clone)]
pub struct Action {
    /// `<pack>.<name>`.
    pub reference: String,
    /// The pack.
    pub pack: String,
    /// The name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Whether it may run.
    pub enabled: bool,
    /// The runner type's name.
    pub runner_type: String,
    /// The component file (WASM actions) or empty.
    pub entry_point: String,
    /// Parameter schemas by name (the action's own; the runner's are merged under them).
    pub parameters: Map<String, Value>,
    /// Tags.
    pub tags: Vec<Value>,
    /// The schema of the result (`output_schema`); its `secret` fields are masked.
    pub output_schema: Map<String, Value>,
    /// For an enabled WASM action, whether its component can run.
    pub component: Option<ComponentStatus>,
    /// Whether a run cut short by a crash or a dead node is run again instead of `abandoned`
    /// (the action metadata's `retry_if_abandoned`).
    pub retry_if_abandoned: bool,
}

/// Whether a WASM action's component can run (Stormhook's own field of the action document,
/// `component`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ComponentStatus {
    /// `ready`, `loading` (its first version is compiling), `failed` (it was refused) or
    /// `missing` (its `.wasm` file is gone).
    pub state: &'static str,
    /// Why it is not ready, or why its latest new version was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Action {
    /// The API object.
    pub fn json(&self) -> Value {
        let mut doc = json!({
            "id": derived_id(&format!("action:{}", self.reference)),
            "uid": format!("action:{}:{}", self.pack, self.name),
            "ref": self.reference,
            "name": self.name,
            "pack": self.pack,
            "description": self.description,
            "enabled": self.enabled,
            "runner_type": self.runner_type,
            "entry_point": self.entry_point,
            "parameters": self.parameters,
            "tags": self.tags,
            "notify": {},
            "output_schema": self.output_schema,
        });
        if let Some(component) = &self.component {
            doc["component"] = json!(component);
        }
        doc
    }

    /// The schema of every parameter the action takes: the runner's parameters with the
    /// action's attributes over them (StackStorm merges them the same way).
    pub fn effective_parameters(&self, runner: &RunnerType) -> Map<String, Value> {
        let mut merged = runner.parameters.clone();
        for (name, schema) in &self.parameters {
            match (merged.get_mut(name), schema) {
                (Some(Value::Object(base)), Value::Object(over)) => {
                    base.extend(over.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                _ => {
                    merged.insert(name.clone(), schema.clone());
                }
            }
        }
        merged
    }
}

/// Stable ids for things that are not stored (built-in actions, runner types): 24 hex digits
/// derived from the uid.
fn derived_id(uid: &str) -> String {
    use sha2::Digest as _;
    hex::encode(&sha2::Sha256::digest(uid.as_bytes())[..12])
}

fn pack_action(meta: &stormhook_packs::ActionMeta) -> Action {
    Action {
        reference: meta.reference(),
        pack: meta.pack.clone(),
        name: meta.name.clone(),
        description: meta.description.clone(),
        enabled: meta.enabled,
        runner_type: WASM_RUNNER.into(),
        entry_point: meta.entry_point.clone(),
        parameters: meta.parameters.clone(),
        tags: meta.tags.clone(),
        output_schema: meta.output_schema.clone(),
        component: None,
        retry_if_abandoned: meta.retry_if_abandoned,
    }
}

fn builtin(
    name: &str,
    runner: &str,
    description: &str,
    parameters: Value,
    enabled: bool,
) -> Action {
    Action {
        reference: format!("core.{name}"),
        pack: "core".into(),
        name: name.into(),
        description: description.into(),
        enabled,
        runner_type: runner.into(),
        entry_point: String::new(),
        parameters: params(parameters),
        tags: Vec::new(),
        output_schema: Map::new(),
        component: None,
        retry_if_abandoned: false,
    }
}

/// Every action the server offers: the built-in `core` actions and the WASM actions of the
/// pack folders.
#[derive(Clone)]
pub struct Catalog {
    packs: Arc<PackManager>,
    local_enabled: bool,
    http_policy: Arc<http::HttpPolicy>,
    /// The `core` actions, built once.
    builtins: Arc<[Action]>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("local_enabled", &self.local_enabled)
            .finish_non_exhaustive()
    }
}

impl Catalog {
    /// The catalog over `packs`; `local_enabled: false` disables `core.local` (shell commands).
    pub fn new(packs: Arc<PackManager>, local_enabled: bool) -> Self {
        Self {
            packs,
            local_enabled,
            http_policy: Arc::default(),
            builtins: builtins(local_enabled).into(),
        }
    }

    /// Runs `execution` (already `running`) on its runner: the one dispatch over the runners.
    pub async fn run(&self, execution: &Execution) -> Outcome {
        let empty = Map::new();
        let params = execution.run_parameters.as_object().unwrap_or(&empty);
        match (execution.action_ref.as_str(), execution.runner.as_str()) {
            ("core.echo", _) => builtin::echo(params),
            (_, NOOP_RUNNER) => builtin::noop(),
            (_, LOCAL_RUNNER) if !self.local_enabled => Outcome::failed(
                json!({"error": "core.local is disabled on this server (--disable-core-local)"}),
            ),
            (_, LOCAL_RUNNER) => local::run(params).await,
            (reference, HTTP_RUNNER) => {
                // A ref is split at its first dot: the name may have dots of its own.
                let name = reference
                    .split_once('.')
                    .map_or(reference, |(_, name)| name);
                http::run(params, name, &self.http_policy).await
            }
            (reference, WASM_RUNNER) => {
                let mut outcome =
                    wasm::run(self.packs.runtime(), reference, execution, params).await;
                if outcome.result["error_kind"] == "not-found"
                    && let Some(ComponentStatus {
                        error: Some(why), ..
                    }) = self.describe(reference).and_then(|a| a.component)
                {
                    outcome.result["error"] =
                        json!(format!("action `{reference}` cannot run: {why}"));
                }
                outcome
            }
            (_, runner) => Outcome::failed(json!({"error": format!("unknown runner {runner:?}")})),
        }
    }

    /// The same catalog, with `core.http` connecting only where `policy` allows (by default,
    /// anywhere but link-local and cloud metadata addresses).
    #[must_use]
    pub fn with_http_policy(mut self, policy: http::HttpPolicy) -> Self {
        self.http_policy = Arc::new(policy);
        self
    }

    /// Where `core.http` may connect.
    pub fn http_policy(&self) -> &Arc<http::HttpPolicy> {
        &self.http_policy
    }

    /// Whether `core.local` may run shell commands.
    pub fn local_enabled(&self) -> bool {
        self.local_enabled
    }

    /// The packs the catalog's actions come from.
    pub fn packs(&self) -> &Arc<PackManager> {
        &self.packs
    }
}

/// The `core` actions; `core.local` is disabled when `local_enabled` is false.
fn builtins(local_enabled: bool) -> Vec<Action> {
    vec![
        builtin(
            "echo",
            LOCAL_RUNNER,
            "Action that executes the Linux echo command on the localhost.",
            json!({
                "message": {"type": "string", "description": "The message that the command will echo.", "required": true},
                "cmd": {"immutable": true, "default": "echo \"{{message}}\""},
                "sudo": {"immutable": true},
            }),
            true,
        ),
        builtin(
            "http",
            HTTP_RUNNER,
            "Action that performs an http request.",
            json!({"url": {"required": true}}),
            true,
        ),
        builtin(
            "local",
            LOCAL_RUNNER,
            "Action that executes an arbitrary Linux command on the localhost.",
            json!({
                "cmd": {"type": "string", "description": "Arbitrary Linux command to be executed on the local host.", "required": true},
                "sudo": {"immutable": true},
            }),
            local_enabled,
        ),
        builtin(
            "noop",
            NOOP_RUNNER,
            "Action that does nothing",
            json!({}),
            true,
        ),
    ]
}

impl Catalog {
    /// Every action, sorted by ref.
    pub fn list(&self) -> Vec<Action> {
        let mut all = self.builtins.to_vec();
        all.extend(
            self.packs
                .actions()
                .iter()
                .map(|meta| self.with_component(meta)),
        );
        all.sort_by(|a, b| a.reference.cmp(&b.reference));
        all
    }

    /// The action with this ref (or derived id), without its component's state (see
    /// [`Catalog::describe`]): what the executor checks on every request, with no file access.
    pub fn get(&self, ref_or_id: &str) -> Option<Action> {
        self.find(ref_or_id, pack_action)
    }

    /// The action with this ref (or derived id), a WASM action with its component's state:
    /// what the API shows.
    pub fn describe(&self, ref_or_id: &str) -> Option<Action> {
        self.find(ref_or_id, |meta| self.with_component(meta))
    }

    fn find(
        &self,
        ref_or_id: &str,
        make: impl FnOnce(&stormhook_packs::ActionMeta) -> Action,
    ) -> Option<Action> {
        let is = |reference: &str| {
            reference == ref_or_id || derived_id(&format!("action:{reference}")) == ref_or_id
        };
        if let Some(builtin) = self.builtins.iter().find(|a| is(&a.reference)) {
            return Some(builtin.clone());
        }
        let actions = self.packs.actions();
        actions.iter().find(|meta| is(&meta.reference())).map(make)
    }

    /// A pack action with the state of its component.
    fn with_component(&self, meta: &stormhook_packs::ActionMeta) -> Action {
        let mut action = pack_action(meta);
        if !meta.enabled {
            return action;
        }
        let file = self
            .packs
            .root()
            .join(&meta.pack)
            .join("actions")
            .join(&meta.entry_point);
        let plugin = self
            .packs
            .runtime()
            .info(PluginKind::Action, &action.reference);
        action.component = Some(match plugin {
            _ if !file.is_file() => ComponentStatus {
                state: "missing",
                error: Some(format!("its component file {} is missing", file.display())),
            },
            Some(p) => ComponentStatus {
                state: match p.state {
                    PluginState::Ready => "ready",
                    PluginState::Loading => "loading",
                    PluginState::Failed => "failed",
                },
                error: p.last_error.clone(),
            },
            None => ComponentStatus {
                state: "failed",
                error: Some("its component is not loaded".into()),
            },
        });
        action
    }
}
