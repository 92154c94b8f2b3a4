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
    /// Whether `get` may read values stored as secrets (`st2 key set --encrypt`). A plugin
    /// without it gets `denied` for a secret key; one with it gets the plaintext, and the host
    /// masks that value in everything it records of the call.
    pub secrets: bool,
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
    /// How CPU is shared between guests and everything else ([`Fairness`]).
    pub fairness: Fairness,
    /// What a component may be before it is compiled ([`LoadLimits`]).
    pub load: LoadLimits,
    /// The most plugin-started links (`events.emit`, `events.request-execution`) a chain of
    /// work may have; a call at that depth is refused with `denied`.
    pub max_chain_depth: u32,
    /// Per-call bounds of actions' outbound HTTP.
    pub outbound: crate::outbound::OutboundLimits,
    /// A PEM file of extra CA certificates that outbound HTTPS trusts, besides the webpki and
    /// system roots.
    pub ca_bundle: Option<PathBuf>,
}

/// How guest CPU time is kept from starving the server.
///
/// Every call starts on the caller's thread. A call still running after
/// [`Fairness::foreground_slice`] is moved, at its next epoch tick, to the background guest
/// pool: [`Fairness::background_threads`] threads running at a lower OS priority
/// ([`Fairness::background_idle`], [`Fairness::background_nice`]), where long calls take turns (each yields at every epoch tick).
/// Short calls (almost all of them) never leave the caller's thread; a guest that spins until
/// its deadline spends all but its first slice at low priority, so webhook intake and the API
/// keep their CPU share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fairness {
    /// How long a call runs on the caller's thread before it moves to the background pool.
    pub foreground_slice: Duration,
    /// Threads of the background guest pool (default: the number of CPUs).
    pub background_threads: usize,
    /// The `nice` value of the background pool's threads and of compiler threads (Linux;
    /// 0 keeps the normal priority, 19 is the lowest).
    pub background_nice: i32,
    /// Whether those threads run in Linux's `SCHED_IDLE` class: only on CPU time that no
    /// normal thread wants. Nice alone leaves long guests ~10% of a busy CPU and delays the
    /// server's wake-ups behind them (measured: ingest at ~0.5 of alone with 4 spinning
    /// actions); the idle class keeps intake whole.
    pub background_idle: bool,
}

impl Default for Fairness {
    fn default() -> Self {
        Self {
            foreground_slice: Duration::from_millis(10),
            background_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            background_nice: 10,
            background_idle: true,
        }
    }
}

/// Limits checked when a component is loaded: its size and what it declares before it is
/// compiled, then the compile itself. A refused version never reaches the compile cache, and
/// the version already serving (if any) keeps serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadLimits {
    /// Largest `.wasm` file accepted, in bytes.
    pub max_file_bytes: u64,
    /// Most functions (defined and imported, over every core module of the component).
    pub max_functions: u64,
    /// Most bytes of data segments (over every core module).
    pub max_data_bytes: u64,
    /// Most tables defined (over every core module); the instance pool holds 4 per component.
    pub max_tables: u64,
    /// Most linear memories defined (over every core module); the pool holds 4 per component.
    pub max_memories: u64,
    /// Most core modules a component may contain.
    pub max_modules: u64,
    /// How long compiling one component may take. Past it the version is refused; the
    /// compiler thread (which cannot be interrupted) finishes at low priority and its output
    /// is thrown away, and it keeps its compile slot until then.
    pub compile_timeout: Duration,
    /// How many components compile at once.
    pub parallel_compiles: usize,
    /// Total size of the compile cache; past it the least recently used entries that no
    /// loaded version uses are deleted.
    pub cache_max_bytes: u64,
    /// How long a call to a plugin that is still loading (at start, or added since) waits for
    /// it before it fails as `loading`.
    pub loading_wait: Duration,
}

impl Default for LoadLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: 48 << 20,
            max_functions: 100_000,
            max_data_bytes: 32 << 20,
            max_tables: 4,
            max_memories: 4,
            max_modules: 16,
            compile_timeout: Duration::from_secs(60),
            parallel_compiles: 4,
            cache_max_bytes: 1 << 30,
            loading_wait: Duration::from_secs(30),
        }
    }
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
            fairness: Fairness::default(),
            load: LoadLimits::default(),
            max_chain_depth: 8,
            outbound: crate::outbound::OutboundLimits::default(),
            ca_bundle: None,
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
