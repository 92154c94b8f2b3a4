//! Action metadata: `<pack>/actions/<name>.yaml`.
//!
//! ```yaml
//! name: greet
//! pack: examples            # optional; must match the pack folder when given
//! description: Greets someone.
//! runner_type: wasm
//! entry_point: greet.wasm   # a component next to this file
//! enabled: true
//! parameters:               # JSON schema of each parameter, StackStorm style
//!   name: {type: string, required: true}
//! limits:                   # optional; defaults and caps come from the server config
//!   timeout_ms: 5000
//!   memory_mb: 64
//! datastore:                # optional; default: no datastore access
//!   read: true
//!   write: true
//!   prefix: "examples."     # keys must start with this; default: the pack name and a dot
//!   secrets: false          # whether `kv.get` may read secret (encrypted) keys
//! allowed_outbound_hosts:   # optional; hosts the component may call over wasi:http (Spin syntax)
//!   - "https://hooks.slack.com"
//!   - "https://*.example.com:8443"
//! events: false             # optional; whether it may `emit` triggers and `request-execution`
//! retry_if_abandoned: false # optional; run it again (up to 3 times) when a crash or a dead node
//!                           # cut a run short, instead of marking it `abandoned`
//! output_schema: {}         # optional; the result's JSON schema (`secret: true` fields masked)
//! ```

use serde::Deserialize;

use crate::error::DocError;

/// The metadata of one action.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ActionMeta {
    /// The action name; the reference is `<pack>.<name>`.
    pub name: String,
    /// The pack; filled from the pack folder when absent.
    #[serde(default)]
    pub pack: String,
    /// A description for listings.
    #[serde(default)]
    pub description: String,
    /// The runner; Stormhook packs support `wasm`.
    pub runner_type: String,
    /// The component file, next to the metadata file.
    pub entry_point: String,
    /// Whether the action may run.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Parameter schemas by name (StackStorm's shape: JSON schema per parameter).
    #[serde(default)]
    pub parameters: serde_json::Map<String, serde_json::Value>,
    /// Per-call limits.
    #[serde(default)]
    pub limits: Option<LimitsDoc>,
    /// Datastore access.
    #[serde(default)]
    pub datastore: Option<DatastoreGrant>,
    /// Hosts the component may reach over `wasi:http` (Spin's syntax); none by default.
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// Whether the component may use the `events` import.
    #[serde(default)]
    pub events: bool,
    /// Whether a run cut short by a crash or a dead node (which would be `abandoned`) is run
    /// again instead, up to [`MAX_ABANDONED_RUNS`] runs in all: for an action whose effects
    /// may safely happen twice. Default: no (it may already have had effects).
    #[serde(default)]
    pub retry_if_abandoned: bool,
    /// Tags, as StackStorm allows.
    #[serde(default)]
    pub tags: Vec<serde_json::Value>,
    /// The schema of the component's result (StackStorm's `output_schema`): shown on the
    /// action, and its `secret: true` fields are masked in the executions' results.
    #[serde(default)]
    pub output_schema: serde_json::Map<String, serde_json::Value>,
}

/// How many runs of one execution a crash or a dead node may cut short before it is
/// `abandoned` even when its action has `retry_if_abandoned`.
pub const MAX_ABANDONED_RUNS: u64 = 3;

/// Per-call limits as a document gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsDoc {
    /// Deadline in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Memory cap in MiB.
    pub memory_mb: Option<u64>,
}

/// Datastore access as a document grants it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatastoreGrant {
    /// Whether reads are allowed.
    #[serde(default)]
    pub read: bool,
    /// Whether writes and deletes are allowed.
    #[serde(default)]
    pub write: bool,
    /// Keys must start with this; `None` means `<pack>.`.
    pub prefix: Option<String>,
    /// Whether `get` may read secret (encrypted) keys.
    #[serde(default)]
    pub secrets: bool,
}

fn yes() -> bool {
    true
}

impl ActionMeta {
    /// Parses and validates action metadata found in the folder of pack `pack`.
    ///
    /// # Errors
    ///
    /// [`DocError`] with line and column for YAML and schema errors, and for values that are
    /// not acceptable (unsupported runner, unsafe entry point, pack mismatch).
    pub fn parse(path: &str, text: &str, pack: &str) -> Result<Self, DocError> {
        let mut meta: Self =
            yaml_serde::from_str(text).map_err(|e| DocError::from_yaml(path, &e))?;
        if !crate::is_valid_name(&meta.name) {
            return Err(DocError::at_key(
                path,
                text,
                "name",
                format!(
                    "invalid action name {:?}: a name is not empty and has no control characters",
                    meta.name
                ),
            ));
        }
        if meta.pack.is_empty() {
            meta.pack = pack.to_owned();
        } else if meta.pack != pack {
            return Err(DocError::at_key(
                path,
                text,
                "pack",
                format!(
                    "pack {:?} does not match the pack folder {pack:?}",
                    meta.pack
                ),
            ));
        }
        if meta.runner_type != "wasm" {
            return Err(DocError::at_key(
                path,
                text,
                "runner_type",
                format!(
                    "runner_type {:?} is not supported in packs; use `wasm`",
                    meta.runner_type
                ),
            ));
        }
        if !crate::is_plain_wasm_file(&meta.entry_point) {
            return Err(DocError::at_key(
                path,
                text,
                "entry_point",
                format!(
                    "entry_point {:?} must be a `.wasm` file name next to this file",
                    meta.entry_point
                ),
            ));
        }
        if let Some(limits) = meta.limits
            && (limits.timeout_ms == Some(0) || limits.memory_mb == Some(0))
        {
            return Err(DocError::at_key(
                path,
                text,
                "limits",
                "limits must be positive",
            ));
        }
        Ok(meta)
    }

    /// `<pack>.<name>`.
    pub fn reference(&self) -> String {
        format!("{}.{}", self.pack, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_wasm_action() {
        let text =
            "name: greet\nrunner_type: wasm\nentry_point: greet.wasm\nlimits: {timeout_ms: 50}\n";
        let meta = ActionMeta::parse("a.yaml", text, "examples").unwrap();
        assert_eq!(meta.reference(), "examples.greet");
        assert_eq!(meta.limits.unwrap().timeout_ms, Some(50));
        assert!(meta.enabled);
    }

    #[test]
    fn rejects_other_runners_at_their_line() {
        let text = "name: greet\nrunner_type: local-shell-cmd\nentry_point: greet.wasm\n";
        let err = ActionMeta::parse("a.yaml", text, "examples").unwrap_err();
        assert_eq!(
            err.to_string(),
            "a.yaml:2:1: runner_type \"local-shell-cmd\" is not supported in packs; use `wasm`"
        );
    }

    #[test]
    fn rejects_paths_in_entry_points() {
        let text = "name: greet\nrunner_type: wasm\nentry_point: ../../etc/x.wasm\n";
        let err = ActionMeta::parse("a.yaml", text, "examples").unwrap_err();
        assert_eq!(err.line, Some(3));
    }

    #[test]
    fn reports_yaml_errors_with_line_and_column() {
        let text = "name: greet\nrunner_type: [wasm\n";
        let err = ActionMeta::parse("a.yaml", text, "examples").unwrap_err();
        assert!(err.line.is_some() && err.column.is_some(), "{err}");
        assert!(err.to_string().starts_with("a.yaml:"), "{err}");
    }

    #[test]
    fn reports_missing_fields() {
        let err = ActionMeta::parse("a.yaml", "name: greet\nrunner_type: wasm\n", "examples")
            .unwrap_err();
        assert!(err.message.contains("missing field `entry_point`"), "{err}");
    }
}
