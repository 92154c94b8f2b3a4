//! Limits and pool sizes.

use std::path::PathBuf;
use std::time::Duration;

/// Per-call limits of one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long one call may run before it is interrupted.
    pub timeout: Duration,
    /// The most linear memory (bytes) one call may grow to.
    pub memory_bytes: u64,
}

/// What a plugin may do with the key-value datastore (`kv` import).
///
/// The default grants nothing: every `kv` call returns `error::denied`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvGrant {
    /// Whether `get` is allowed.
    pub read: bool,
    /// Whether `set` and `delete` are allowed.
    pub write: bool,
    /// Keys the plugin may touch must start with this prefix (empty: any key).
    pub prefix: String,
}

impl KvGrant {
    /// Whether `key` is inside the granted prefix.
    pub fn covers(&self, key: &str) -> bool {
        key.starts_with(&self.prefix)
    }
}

/// Configuration of the runtime, fixed when it is created.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Most component instances alive at once. This sizes the pooling allocator and the
    /// semaphore in front of it: a call past it fails with [`crate::PluginError::Busy`].
    pub max_instances: u32,
    /// How long a call waits for a free instance slot before it fails as busy.
    pub queue_timeout: Duration,
    /// Limits of rule calls unless a rule file says otherwise.
    pub rule_defaults: Limits,
    /// Limits of action calls unless an action file says otherwise.
    pub action_defaults: Limits,
    /// Ceiling for any per-plugin limit: requests above it are clamped, with a warning.
    pub max_limits: Limits,
    /// Bytes of log lines, stdout and stderr kept per call (each); the rest is counted and dropped.
    pub capture_bytes: usize,
    /// Largest result (JSON text) a plugin may return.
    pub max_output_bytes: usize,
    /// Where precompiled code is cached (`<dir>/<engine hash>/<sha256>.cwasm`); `None` compiles
    /// in memory every time.
    pub cache_dir: Option<PathBuf>,
    /// How often the epoch ticker advances; deadlines are checked at this granularity.
    pub epoch_tick: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_instances: 256,
            queue_timeout: Duration::from_millis(0),
            rule_defaults: Limits {
                timeout: Duration::from_millis(100),
                memory_bytes: 32 << 20,
            },
            action_defaults: Limits {
                timeout: Duration::from_secs(60),
                memory_bytes: 128 << 20,
            },
            max_limits: Limits {
                timeout: Duration::from_secs(600),
                memory_bytes: 1 << 30,
            },
            capture_bytes: 64 << 10,
            max_output_bytes: 16 << 20,
            cache_dir: None,
            epoch_tick: Duration::from_millis(2),
        }
    }
}

impl RuntimeConfig {
    /// Clamps requested limits to [`RuntimeConfig::max_limits`].
    pub fn clamp(&self, limits: Limits) -> Limits {
        Limits {
            timeout: limits.timeout.min(self.max_limits.timeout),
            memory_bytes: limits.memory_bytes.min(self.max_limits.memory_bytes),
        }
    }
}
