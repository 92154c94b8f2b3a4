//! The runtime's public value types: what a caller passes in and gets back. A leaf module:
//! it depends on no other module of this crate, so the call, registry, host and error modules
//! can all use it without a cycle.

use std::fmt;
use std::path::PathBuf;

use crate::config::{KvGrant, Limits};

/// Which world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    /// `stormhook:plugin/rule`.
    Rule,
    /// `stormhook:plugin/action`.
    Action,
    /// `stormhook:plugin/responder`: computes a webhook's HTTP answer on the request path.
    Responder,
}

impl PluginKind {
    /// The WIT world name.
    pub fn world(self) -> &'static str {
        match self {
            Self::Rule => "rule",
            Self::Action => "action",
            Self::Responder => "responder",
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.world())
    }
}

/// What to load: a plugin reference, its world, its file and its limits and grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSpec {
    /// `<pack>.<name>`.
    pub reference: String,
    /// Which world the component must implement.
    pub kind: PluginKind,
    /// The `.wasm` component file.
    pub path: PathBuf,
    /// Per-call limits; `None` takes the runtime's defaults for the kind.
    pub limits: Option<Limits>,
    /// Datastore access.
    pub kv: KvGrant,
    /// Whether the plugin may use the `events` import (`emit`, `request-execution`).
    pub events: bool,
    /// Hosts an action may reach over `wasi:http`, in Spin's syntax (`https://api.example.com`,
    /// `https://*.slack.com:443`); empty: none. Checked when the plugin loads.
    pub allowed_outbound_hosts: Vec<String>,
}

impl PluginSpec {
    /// A spec with default limits and no datastore access.
    pub fn new(reference: impl Into<String>, kind: PluginKind, path: impl Into<PathBuf>) -> Self {
        Self {
            reference: reference.into(),
            kind,
            path: path.into(),
            limits: None,
            kv: KvGrant::default(),
            events: false,
            allowed_outbound_hosts: Vec::new(),
        }
    }
}

/// A plugin reference and the content hash of the version that ran, as errors and logs name it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginVersion {
    /// `<pack>.<name>`.
    pub reference: String,
    /// SHA-256 of the `.wasm` file, hex.
    pub version: String,
}

impl fmt::Display for PluginVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` (version {})",
            self.reference,
            &self.version[..self.version.len().min(12)]
        )
    }
}

/// What [`Runtime::load`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadOutcome {
    /// A new plugin was added.
    Added(PluginVersion),
    /// An existing plugin was replaced by a new version or new settings.
    Replaced(PluginVersion),
    /// The same file and settings were already loaded; nothing changed.
    Unchanged(PluginVersion),
    /// A later load (or an unload) of the same plugin started while this one compiled; this
    /// version was discarded.
    Superseded(PluginVersion),
}

/// Whether a plugin can be called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginState {
    /// A version is serving (a newer one may be loading: see [`PluginInfo::loading`]).
    Ready,
    /// No version yet; the first is being compiled. Calls wait for it, for a bounded time.
    Loading,
    /// No version: the latest attempt failed ([`PluginInfo::last_error`]).
    Failed,
}

impl fmt::Display for PluginState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ready => "ready",
            Self::Loading => "loading",
            Self::Failed => "failed",
        })
    }
}

/// One row of [`Runtime::list`]: what is loaded, or what failed to load.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginInfo {
    /// `<pack>.<name>`.
    #[serde(rename = "ref")]
    pub reference: String,
    /// `rule` or `action`.
    pub kind: PluginKind,
    /// Whether it can be called.
    pub state: PluginState,
    /// Whether a load (a first version, or a new one) is in progress.
    pub loading: bool,
    /// Content hash (SHA-256 hex) of the version serving, if any.
    pub version: Option<String>,
    /// The `stormhook:plugin` package version the serving version was built against
    /// (`0.1.0` or `0.2.0`).
    pub wit: Option<&'static str>,
    /// The file the serving version came from.
    pub path: Option<PathBuf>,
    /// When the serving version was loaded (RFC 3339, UTC).
    pub loaded_at: Option<String>,
    /// The effective per-call deadline in milliseconds.
    pub timeout_ms: Option<u64>,
    /// The effective memory cap in bytes.
    pub memory_bytes: Option<u64>,
    /// Why the latest attempt to load a new version failed, if it did.
    pub last_error: Option<String>,
    /// When that failure happened (RFC 3339, UTC).
    pub last_error_at: Option<String>,
}

/// A trigger instance handed to a rule (the WIT `trigger-instance` record).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TriggerInstance {
    /// The trigger instance id.
    pub id: String,
    /// The trigger reference, for example `core.st2.webhook`.
    pub trigger: String,
    /// The payload as JSON text.
    pub payload: String,
    /// RFC 3339 occurrence time in UTC.
    pub occurrence_time: String,
}

/// What a rule component decided.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RuleDecision {
    /// Whether the rule matches.
    pub matched: bool,
    /// Values for action-parameter templates (a JSON object), if the rule returned any.
    pub values: Option<serde_json::Value>,
}

/// One webhook delivery, for a responder (the WIT `http-request` record).
#[derive(Debug, Clone, Default)]
pub struct HookRequest {
    /// The hook's url.
    pub hook: String,
    /// `POST` or `GET`.
    pub method: String,
    /// The query string without `?`.
    pub query: String,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body bytes as received.
    pub body: Vec<u8>,
    /// The trigger payload, JSON text.
    pub payload: String,
    /// The event's trace tag.
    pub trace_tag: String,
}

/// A responder's answer (the WIT `http-response` record), checked: a status in 100-599,
/// header names and values an HTTP response may carry, no hop-by-hop headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookResponse {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// Whether the delivery is stored as an event.
    pub store: bool,
}

/// Where an action call comes from (the WIT `execution-context` record, less the action ref,
/// which the runtime fills in).
#[derive(Debug, Clone, Default)]
pub struct ActionContext {
    /// The execution id.
    pub execution_id: String,
    /// The rule that caused the execution, if any.
    pub rule_ref: Option<String>,
    /// The trigger instance that caused the execution, if any.
    pub trigger_instance: Option<TriggerInstance>,
    /// The user the execution runs as.
    pub user: String,
    /// The trace tag of the execution's trace, if any.
    pub trace_tag: Option<String>,
    /// The execution that requested this one through `events.request-execution`, if any.
    pub parent_execution_id: Option<String>,
    /// Plugin-started links leading to this execution (0: a webhook, a rule or the API).
    pub depth: u32,
}

/// Severity of a plugin log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Trace.
    Trace,
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warn.
    Warn,
    /// Error.
    Error,
}

/// One line a plugin logged through the `log` import.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogRecord {
    /// Severity.
    pub level: LogLevel,
    /// The message.
    pub message: String,
    /// Key/value fields.
    pub fields: Vec<(String, String)>,
}

/// What a call wrote, bounded by [`crate::RuntimeConfig::capture_bytes`] each.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Captured {
    /// Lines logged through the `log` import.
    pub logs: Vec<LogRecord>,
    /// Log lines dropped past the bound.
    pub logs_dropped: u64,
    /// What the guest printed to stdout (lossy UTF-8).
    pub stdout: String,
    /// Stdout bytes dropped past the bound.
    pub stdout_dropped: u64,
    /// What the guest printed to stderr (a Rust panic message lands here).
    pub stderr: String,
    /// Stderr bytes dropped past the bound.
    pub stderr_dropped: u64,
}

impl Captured {
    /// Whether anything was dropped for exceeding the bound.
    pub fn truncated(&self) -> bool {
        self.logs_dropped + self.stdout_dropped + self.stderr_dropped > 0
    }
}
