//! Pack documents: the action metadata and rule files of a StackStorm-style pack, parsed from
//! text with errors that name the file, line and column.
//!
//! Architecture invariant: this crate does no IO. Callers read files and pass their text and
//! path; the path is only used in messages.
//!
//! # Layout
//!
//! - [`action`], `<pack>/actions/<name>.yaml` ([`ActionMeta`]).
//! - [`rule`], `<pack>/rules/<name>.yaml` ([`RuleDoc`], including the `wasm` key that names a
//!   rule component).
//! - [`config`], `<pack>/config.schema.yaml` ([`ConfigSchema`]) and the operator's values file,
//!   validated into a [`PackConfig`].
//! - [`error`], the error type ([`DocError`]).

pub mod action;
pub mod config;
pub mod error;
pub mod rule;

pub use action::{ActionMeta, DatastoreGrant, LimitsDoc, MAX_ABANDONED_RUNS};
pub use config::{ConfigSchema, PackConfig};
pub use error::DocError;
pub use rule::{RuleDoc, WasmRule};

/// Whether `name` is a safe file name for an entry point: a plain `*.wasm` file name in the same
/// folder as the document (no directories, no `..`).
pub(crate) fn is_plain_wasm_file(name: &str) -> bool {
    name.ends_with(".wasm")
        && name.len() > ".wasm".len()
        && !name.contains(['/', '\\'])
        && !name.starts_with('.')
}

/// Whether `name` is a valid rule or action name. StackStorm's schemas ask only for a string,
/// so dots and spaces are fine (`st2.webhook.github.pulls.merge.sample`, `rule space`): a ref
/// is split at its first dot, the pack before it and the name after
/// (`st2common/st2common/models/system/common.py`, `ResourceReference`). An empty name, or
/// one with control characters (which no log line or listing would show truthfully), is not.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(char::is_control)
}
