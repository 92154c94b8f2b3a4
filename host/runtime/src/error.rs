//! Typed errors of the runtime.
//!
//! [`LoadError`] says why a plugin version was refused; [`PluginError`] says why one call failed.
//! Every message names the plugin (reference and version) so that a log line or an execution
//! record is enough to find the culprit.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::types::PluginVersion;

/// Why a plugin version could not be loaded. The previous version, if any, keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The `.wasm` file could not be read.
    #[error("plugin `{reference}`: cannot read {path}: {source}")]
    Read {
        /// The plugin reference.
        reference: String,
        /// The file that was read.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid WebAssembly component, or it failed to compile.
    #[error("plugin `{reference}` ({path}): not a valid WebAssembly component: {reason}")]
    Compile {
        /// The plugin reference.
        reference: String,
        /// The file that was compiled.
        path: PathBuf,
        /// What the compiler said.
        reason: String,
    },
    /// The component does not fit the WIT world it was declared as (wrong exports, imports the
    /// host does not provide).
    #[error(
        "plugin `{reference}` ({path}): does not implement the `stormhook:plugin/{world}` world: {reason}"
    )]
    Link {
        /// The plugin reference.
        reference: String,
        /// The file that was linked.
        path: PathBuf,
        /// `rule` or `action`.
        world: &'static str,
        /// What the linker said.
        reason: String,
    },
    /// The component is past a load limit (file size, declarations, compile time); it was
    /// not compiled, or its compile was abandoned, and nothing was cached.
    #[error("plugin `{reference}` ({path}): refused: {reason}")]
    Refused {
        /// The plugin reference.
        reference: String,
        /// The file.
        path: PathBuf,
        /// Which limit, and by how much.
        reason: String,
    },
    /// The precompiled-code cache could not be written or read.
    #[error("plugin `{reference}`: compile cache {path}: {reason}")]
    Cache {
        /// The plugin reference.
        reference: String,
        /// The cache file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// The kind of failure a guest reported on purpose (the WIT `error` variant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestErrorKind {
    /// The input is not what the plugin accepts.
    InvalidInput,
    /// The plugin lacks a grant it needs.
    Denied,
    /// Something the plugin depends on failed.
    Upstream,
    /// Any other failure.
    Internal,
}

impl fmt::Display for GuestErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidInput => "invalid-input",
            Self::Denied => "denied",
            Self::Upstream => "upstream",
            Self::Internal => "internal",
        })
    }
}

/// A failure a guest reported on purpose.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GuestError {
    /// Which kind of failure.
    pub kind: GuestErrorKind,
    /// The plugin's message.
    pub message: String,
}

/// Why one call failed. The plugin stays loaded; the next call gets a fresh sandbox.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// No plugin of that reference and kind is loaded.
    #[error("plugin `{reference}` is not loaded")]
    NotFound {
        /// The reference that was asked for.
        reference: String,
    },
    /// The plugin has no version yet and its first one is still loading.
    #[error("plugin `{reference}` is still loading (waited {} ms); retry later", waited.as_millis())]
    Loading {
        /// The reference that was asked for.
        reference: String,
        /// How long the call waited for it.
        waited: Duration,
    },
    /// Every instance slot is in use.
    #[error("plugin `{reference}`: busy, all {limit} instance slots are in use; retry later")]
    Busy {
        /// The reference that was asked for.
        reference: String,
        /// The configured number of slots.
        limit: u32,
    },
    /// The call ran past its deadline and was interrupted.
    #[error("plugin {plugin}: timed out after {} ms (deadline {} ms)", elapsed.as_millis(), deadline.as_millis())]
    Timeout {
        /// The plugin that ran.
        plugin: PluginVersion,
        /// The deadline of this call.
        deadline: Duration,
        /// How long the call had run when it was stopped.
        elapsed: Duration,
    },
    /// The call tried to grow its memory past the cap.
    #[error("plugin {plugin}: out of memory, tried to grow linear memory past the {} MiB cap", limit_bytes >> 20)]
    OutOfMemory {
        /// The plugin that ran.
        plugin: PluginVersion,
        /// The cap in bytes.
        limit_bytes: u64,
    },
    /// The call overflowed the WebAssembly stack.
    #[error("plugin {plugin}: stack overflow (unbounded recursion?)")]
    StackOverflow {
        /// The plugin that ran.
        plugin: PluginVersion,
    },
    /// The guest trapped: a panic, an `unreachable`, an out-of-bounds access.
    #[error("plugin {plugin}: trapped: {message}")]
    Trap {
        /// The plugin that ran.
        plugin: PluginVersion,
        /// The trap and, for a Rust panic, the panic message the guest printed.
        message: String,
    },
    /// The guest ended itself (`exit()`, `proc_exit`) before returning a value.
    #[error("plugin {plugin}: exited with code {code} before returning a result")]
    Exit {
        /// The plugin that ran.
        plugin: PluginVersion,
        /// The exit code the guest gave.
        code: i32,
    },
    /// The guest returned its typed error.
    #[error("plugin {plugin}: {} error: {}", error.kind, error.message)]
    Guest {
        /// The plugin that ran.
        plugin: PluginVersion,
        /// What the guest said.
        error: GuestError,
    },
    /// The guest returned something that is not acceptable output (not JSON, too large).
    #[error("plugin {plugin}: invalid output: {reason}")]
    InvalidOutput {
        /// The plugin that ran.
        plugin: PluginVersion,
        /// What is wrong with it.
        reason: String,
    },
    /// The input could not be handed to the plugin (for example parameters that are not JSON).
    #[error("plugin `{reference}`: invalid input: {reason}")]
    InvalidInput {
        /// The reference that was asked for.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The host failed to set up the call (instantiation failed).
    #[error("plugin {plugin}: host error: {reason}")]
    Host {
        /// The plugin that ran.
        plugin: PluginVersion,
        /// What went wrong.
        reason: String,
    },
}

impl PluginError {
    /// A short machine-readable name of the failure, for records and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "not-found",
            Self::Loading { .. } => "loading",
            Self::Busy { .. } => "busy",
            Self::Timeout { .. } => "timeout",
            Self::OutOfMemory { .. } => "out-of-memory",
            Self::StackOverflow { .. } => "stack-overflow",
            Self::Trap { .. } => "trap",
            Self::Exit { .. } => "exit",
            Self::Guest { .. } => "guest-error",
            Self::InvalidOutput { .. } => "invalid-output",
            Self::InvalidInput { .. } => "invalid-input",
            Self::Host { .. } => "host-error",
        }
    }

    /// Whether the call was stopped for running past its deadline.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// The error with the secrets the call could see masked in the text the guest produced.
    pub(crate) fn redacted(mut self, redactor: &crate::services::Redactor) -> Self {
        match &mut self {
            Self::Trap { message, .. } => *message = redactor.text(message),
            Self::Guest { error, .. } => error.message = redactor.text(&error.message),
            Self::InvalidOutput { reason, .. } | Self::Host { reason, .. } => {
                *reason = redactor.text(reason);
            }
            _ => {}
        }
        self
    }
}
