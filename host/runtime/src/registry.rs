//! Loading, caching, hot-swapping and listing plugins.
//!
//! The registry is an immutable map behind an [`ArcSwap`]: a call takes a snapshot of the one
//! plugin it needs (an `Arc`) and finishes on that version even if a new one is swapped in
//! meanwhile. Writers (load, unload) are serialised by a mutex and never block callers.
//! Compilation runs on the blocking pool, never on a caller's task.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::{ArcSwap, ArcSwapOption};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::Engine;
use wasmtime::component::{Component, ComponentExportIndex, HasSelf, InstancePre, Linker};

use crate::bindings::{WitVersion, v1, v2};
use crate::config::{Limits, RuntimeConfig};
use crate::datastore::Datastore;
use crate::engine::{self, AllocationMode};
use crate::error::LoadError;
use crate::fair::{GuestPool, lower_priority};
use crate::host::HostState;
use crate::inspect::Declared;
use crate::outbound::{OutboundClient, OutboundGrant};
use crate::services::{Events, PackConfigs};
use crate::types::{LoadOutcome, PluginInfo, PluginKind, PluginSpec, PluginState, PluginVersion};

/// What reading a plugin's file found.
enum Read {
    /// The same version and settings are already serving.
    Unchanged(PluginVersion),
    /// A new version (or new settings), within the load limits.
    Changed {
        spec: PluginSpec,
        id: PluginVersion,
        bytes: Arc<[u8]>,
    },
}

/// Precompiled code of a version.
enum Compiled {
    /// In memory (no compile cache configured).
    Fresh(Vec<u8>),
    /// In the compile cache.
    Cached(PathBuf),
}

/// The pre-linked component, ready to instantiate, with the index of its export (`evaluate`
/// or `run`, looked up once, at load) and the package version it was built against.
#[derive(Clone)]
pub(crate) struct Pre {
    pub(crate) instance: InstancePre<HostState>,
    pub(crate) export: ComponentExportIndex,
    pub(crate) wit: WitVersion,
}

/// One loaded plugin version. Immutable; replaced as a whole on reload.
pub(crate) struct LoadedPlugin {
    pub(crate) spec: PluginSpec,
    pub(crate) id: PluginVersion,
    /// `reference@short-version`, for the server log.
    pub(crate) tag: Arc<str>,
    pub(crate) pre: Pre,
    pub(crate) limits: Limits,
    pub(crate) loaded_at: SystemTime,
    /// Where the plugin may send HTTP requests (`allowed_outbound_hosts`, parsed).
    pub(crate) outbound: Arc<OutboundGrant>,
}

#[derive(Default)]
struct Status {
    kind: Option<PluginKind>,
    last_error: Option<(String, SystemTime)>,
    /// Incremented by every load and unload; a load swaps its version in only if no later
    /// load or unload of the same plugin started meanwhile.
    generation: u64,
    /// The generation of the load in progress, if one is.
    loading: Option<u64>,
}

type Map = HashMap<(PluginKind, String), Arc<LoadedPlugin>>;

/// The plugin runtime: one engine, one registry, one instance budget.
///
/// Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) config: RuntimeConfig,
    rule_linker: Linker<HostState>,
    action_linker: Linker<HostState>,
    plugins: ArcSwap<Map>,
    /// Serialises writers of `plugins` and `status`.
    write_lock: Mutex<()>,
    status: Mutex<HashMap<(PluginKind, String), Status>>,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) datastore: Arc<dyn Datastore>,
    /// The server's side of `events`, once attached ([`Runtime::attach`]).
    pub(crate) events: ArcSwapOption<Arc<dyn Events>>,
    /// Pack configurations for the `config` import, once attached.
    pub(crate) configs: ArcSwapOption<Arc<dyn PackConfigs>>,
    /// Outbound HTTPS roots and the resolver, shared by every call.
    pub(crate) outbound: OutboundClient,
    mode: AllocationMode,
    /// Where calls past their foreground slice run.
    pub(crate) pool: GuestPool,
    /// Compiles running (abandoned ones included, until their thread ends).
    compiles: Arc<Semaphore>,
    /// Woken whenever a load ends, for calls waiting on a plugin that is loading.
    loaded: tokio::sync::Notify,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("mode", &self.mode)
            .field("plugins", &self.plugins.load().len())
            .finish()
    }
}

impl Runtime {
    /// Creates the engine, the linkers and an empty registry.
    ///
    /// # Errors
    ///
    /// Fails when the engine cannot be created (even without the pooling allocator) or the
    /// host imports cannot be linked.
    pub fn new(
        config: RuntimeConfig,
        datastore: Arc<dyn Datastore>,
    ) -> Result<Self, std::io::Error> {
        let io = |e: wasmtime::Error| std::io::Error::other(format!("{e:#}"));
        let (engine, mode) = engine::build(&config).map_err(io)?;
        tracing::info!(
            ?mode,
            max_instances = config.max_instances,
            "webassembly engine ready"
        );
        // Both package versions in each linker: their interfaces have different names
        // (`stormhook:plugin/kv@0.1.0`, `...@0.2.0`), and each component imports one of them.
        let mut rule_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut rule_linker).map_err(io)?;
        v2::rule::Rule::add_to_linker::<_, HasSelf<_>>(&mut rule_linker, |s| s).map_err(io)?;
        v1::rule::Rule::add_to_linker::<_, HasSelf<_>>(&mut rule_linker, |s| s).map_err(io)?;
        let mut action_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut action_linker).map_err(io)?;
        v2::action::Action::add_to_linker::<_, HasSelf<_>>(&mut action_linker, |s| s)
            .map_err(io)?;
        // Outbound HTTP: linked for actions; each request is checked against the action's
        // grant by its call's `OutboundCall` (none granted: every request is refused).
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut action_linker).map_err(io)?;
        v1::action::Action::add_to_linker::<_, HasSelf<_>>(&mut action_linker, |s| s)
            .map_err(io)?;
        let pool = GuestPool::new(&config.fairness)?;
        let outbound = OutboundClient::new(config.ca_bundle.as_deref())
            .map_err(|e| std::io::Error::other(format!("outbound HTTP: {e}")))?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(config.max_instances as usize)),
            compiles: Arc::new(Semaphore::new(config.load.parallel_compiles.max(1))),
            loaded: tokio::sync::Notify::new(),
            pool,
            engine,
            config,
            rule_linker,
            action_linker,
            plugins: ArcSwap::default(),
            write_lock: Mutex::new(()),
            status: Mutex::default(),
            datastore,
            events: ArcSwapOption::empty(),
            configs: ArcSwapOption::empty(),
            outbound,
            mode,
        })
    }

    /// Attaches what the server provides to plugins beyond the datastore: `events` (starting
    /// more work) and pack configurations (`config`). Calls made before see no config and
    /// cannot start work.
    pub fn attach(&self, events: Arc<dyn Events>, configs: Arc<dyn PackConfigs>) {
        self.events.store(Some(Arc::new(events)));
        self.configs.store(Some(Arc::new(configs)));
    }

    /// The configuration the runtime was created with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// How many instance slots calls hold right now.
    pub fn instances_in_use(&self) -> usize {
        (self.config.max_instances as usize).saturating_sub(self.permits.available_permits())
    }

    /// Whether instances come from the pooling allocator (`false`: on-demand fallback).
    pub fn is_pooling(&self) -> bool {
        self.mode == AllocationMode::Pooling
    }

    /// Loads or replaces a plugin; the swap is atomic.
    ///
    /// The plugin counts as loading from this call on (calls to a plugin that is loading and
    /// has no version yet wait for it, see [`crate::LoadLimits::loading_wait`]). The file's
    /// size and declarations are checked first, then it is compiled on a low-priority thread
    /// (or taken from the compile cache), with at most
    /// [`crate::LoadLimits::parallel_compiles`] compiles at once and each bounded by
    /// [`crate::LoadLimits::compile_timeout`]. Loads of different plugins run independently;
    /// of two loads of the same plugin, the one started last wins.
    ///
    /// Calls in flight finish on the version they started with. When the new version fails,
    /// the old one (if any) keeps serving and the failure is recorded for [`Runtime::list`].
    ///
    /// # Errors
    ///
    /// [`LoadError`] when the file cannot be read, is refused by a load limit, or cannot be
    /// compiled, cached or linked.
    pub fn load(
        self: &Arc<Self>,
        spec: PluginSpec,
    ) -> impl std::future::Future<Output = Result<LoadOutcome, LoadError>> + Send + 'static {
        let key = (spec.kind, spec.reference.clone());
        let generation = self.begin_loading(&key);
        let this = Arc::clone(self);
        async move {
            let result = this.load_version(spec, generation).await;
            if let Err(err) = &result {
                tracing::error!(plugin = %key.1, kind = %key.0, "refused new plugin version: {err}");
            }
            this.end_loading(&key, generation, result.as_ref().err());
            result
        }
    }

    async fn load_version(
        self: &Arc<Self>,
        spec: PluginSpec,
        generation: u64,
    ) -> Result<LoadOutcome, LoadError> {
        let this = Arc::clone(self);
        let task_failed = |reference: String| {
            move |join: tokio::task::JoinError| LoadError::Compile {
                reference,
                path: PathBuf::new(),
                reason: format!("loader task failed: {join}"),
            }
        };
        let reference = spec.reference.clone();
        let read = tokio::task::spawn_blocking(move || this.read_checked(spec))
            .await
            .map_err(task_failed(reference.clone()))??;
        let (spec, id, bytes) = match read {
            Read::Unchanged(id) => return Ok(LoadOutcome::Unchanged(id)),
            Read::Changed { spec, id, bytes } => (spec, id, bytes),
        };
        let code = self.compile(&spec, &id, bytes).await?;
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || this.install(spec, id, &code, generation))
            .await
            .map_err(task_failed(reference))?
    }

    /// Reads the file after checking its size, and checks what it declares.
    fn read_checked(&self, spec: PluginSpec) -> Result<Read, LoadError> {
        let reference = spec.reference.clone();
        let read_err = |source| LoadError::Read {
            reference: reference.clone(),
            path: spec.path.clone(),
            source,
        };
        outbound_grant(&spec)?;
        let limits = &self.config.load;
        // Reads at most one byte past the limit: a larger file is refused unread.
        let mut bytes = Vec::new();
        std::fs::File::open(&spec.path)
            .and_then(|file| file.take(limits.max_file_bytes + 1).read_to_end(&mut bytes))
            .map_err(read_err)?;
        if bytes.len() as u64 > limits.max_file_bytes {
            return Err(LoadError::Refused {
                reference,
                path: spec.path.clone(),
                reason: format!(
                    "the file is more than the limit of {} bytes",
                    limits.max_file_bytes
                ),
            });
        }
        let id = PluginVersion {
            reference: reference.clone(),
            version: hex::encode(Sha256::digest(&bytes)),
        };
        let key = (spec.kind, reference.clone());
        if let Some(current) = self.plugins.load().get(&key)
            && current.id == id
            && current.spec == spec
        {
            return Ok(Read::Unchanged(id));
        }
        let declared = Declared::read(&bytes).map_err(|reason| LoadError::Compile {
            reference: reference.clone(),
            path: spec.path.clone(),
            reason: one_line(&reason),
        })?;
        declared
            .check(limits)
            .map_err(|reason| LoadError::Refused {
                reference: reference.clone(),
                path: spec.path.clone(),
                reason,
            })?;
        Ok(Read::Changed {
            spec,
            id,
            bytes: bytes.into(),
        })
    }

    /// The precompiled code of a version: from the compile cache, or compiled now on a
    /// low-priority thread within the compile timeout (and then cached).
    async fn compile(
        &self,
        spec: &PluginSpec,
        id: &PluginVersion,
        bytes: Arc<[u8]>,
    ) -> Result<Compiled, LoadError> {
        let compile_err = |reason: String| LoadError::Compile {
            reference: id.reference.clone(),
            path: spec.path.clone(),
            reason: one_line(&reason),
        };
        let cached = self
            .config
            .cache_dir
            .as_deref()
            .map(|dir| self.cache_path(dir, &id.version));
        if let Some(path) = &cached
            && is_host_precompiled(path)
        {
            // Touched so that eviction keeps recently used entries.
            let _ = std::fs::File::open(path).and_then(|f| f.set_modified(SystemTime::now()));
            return Ok(Compiled::Cached(path.clone()));
        }
        let permit = Arc::clone(&self.compiles)
            .acquire_owned()
            .await
            .map_err(|_| compile_err("the runtime is shutting down".into()))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let engine = self.engine.clone();
        // Nice, not the idle class: a compile must finish within its timeout even while
        // webhook intake keeps every CPU busy.
        let nice = self.config.fairness.background_nice;
        let started = std::time::Instant::now();
        std::thread::Builder::new()
            .name("stormhook-compile".into())
            .spawn(move || {
                // Compiler threads (and the rayon threads wasmtime starts from here, which
                // inherit it) run at the guest pool's nice value.
                lower_priority(nice, false);
                let code = engine
                    .precompile_component(&bytes)
                    .map_err(|e| format!("{e:#}"));
                let _ = tx.send(code);
                // Held until the compile really ends, abandoned or not.
                drop(permit);
            })
            .map_err(|e| compile_err(format!("cannot start a compiler thread: {e}")))?;
        let timeout = self.config.load.compile_timeout;
        let code = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(code)) => code.map_err(compile_err)?,
            Ok(Err(_)) => return Err(compile_err("the compiler thread failed".into())),
            Err(_) => {
                return Err(LoadError::Refused {
                    reference: id.reference.clone(),
                    path: spec.path.clone(),
                    reason: format!(
                        "compiling took longer than the limit of {} s; abandoned",
                        timeout.as_secs_f64()
                    ),
                });
            }
        };
        tracing::debug!(plugin = %id.reference, elapsed_ms = started.elapsed().as_millis() as u64, bytes = code.len(), "compiled");
        match cached {
            None => Ok(Compiled::Fresh(code)),
            Some(path) => {
                let written = write_atomically(&path, &code);
                written.map_err(|e| LoadError::Cache {
                    reference: id.reference.clone(),
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                Ok(Compiled::Cached(path))
            }
        }
    }

    /// Turns precompiled code into a linked plugin and swaps it in, unless a later load or an
    /// unload of the same plugin started meanwhile. Runs on the blocking pool.
    fn install(
        &self,
        spec: PluginSpec,
        id: PluginVersion,
        code: &Compiled,
        generation: u64,
    ) -> Result<LoadOutcome, LoadError> {
        let reference = id.reference.clone();
        let compile_err = |e: wasmtime::Error| LoadError::Compile {
            reference: reference.clone(),
            path: spec.path.clone(),
            reason: one_line(&format!("{e:#}")),
        };
        let component = match code {
            // SAFETY: `deserialize` trusts its input to be wasmtime's own output, because it
            // maps native code. This is the output of `precompile_component` just above, by
            // this engine, never bytes from a pack folder.
            #[allow(unsafe_code)]
            Compiled::Fresh(code) => {
                unsafe { Component::deserialize(&self.engine, code) }.map_err(compile_err)?
            }
            Compiled::Cached(path) => {
                // SAFETY: `deserialize_file` trusts the file to be wasmtime's own output, because
                // it maps native code. Only paths computed here are ever passed: files this host
                // wrote (atomically, in its private cache directory keyed by the engine's
                // compatibility hash), never a `.cwasm` from a pack folder.
                #[allow(unsafe_code)]
                let loaded = unsafe { Component::deserialize_file(&self.engine, path) };
                loaded.map_err(|e| LoadError::Cache {
                    reference: reference.clone(),
                    path: path.clone(),
                    reason: one_line(&format!("{e:#}")),
                })?
            }
        };
        component
            .initialize_copy_on_write_image()
            .map_err(compile_err)?;
        let link_err = |e: wasmtime::Error| LoadError::Link {
            reference: reference.clone(),
            path: spec.path.clone(),
            world: spec.kind.world(),
            reason: one_line(&format!("{e:#}")),
        };
        let wit = WitVersion::of(&component, &self.engine);
        let (linker, export) = match spec.kind {
            PluginKind::Rule => (&self.rule_linker, "evaluate"),
            PluginKind::Action => (&self.action_linker, "run"),
            // A responder imports what a rule may (log, kv, config).
            PluginKind::Responder => (&self.rule_linker, "respond"),
        };
        let export = component
            .get_export_index(None, export)
            .ok_or_else(|| link_err(wasmtime::Error::msg(format!("no `{export}` export"))))?;
        let instance = linker.instantiate_pre(&component).map_err(link_err)?;
        // The world's own check of the export's type, so a mismatch is refused at load time.
        match (spec.kind, wit) {
            (PluginKind::Rule, WitVersion::V2) => {
                v2::rule::RulePre::new(instance.clone()).map_err(link_err)?;
            }
            (PluginKind::Rule, WitVersion::V1) => {
                v1::rule::RulePre::new(instance.clone()).map_err(link_err)?;
            }
            (PluginKind::Action, WitVersion::V2) => {
                v2::action::ActionPre::new(instance.clone()).map_err(link_err)?;
            }
            (PluginKind::Action, WitVersion::V1) => {
                v1::action::ActionPre::new(instance.clone()).map_err(link_err)?;
            }
            (PluginKind::Responder, WitVersion::V2) => {
                v2::responder::ResponderPre::new(instance.clone()).map_err(link_err)?;
            }
            (PluginKind::Responder, WitVersion::V1) => {
                return Err(link_err(wasmtime::Error::msg(
                    "stormhook:plugin@0.1.0 has no responder world; build against 0.2.0",
                )));
            }
        }
        let pre = Pre {
            instance,
            export,
            wit,
        };
        let defaults = match spec.kind {
            // A responder answers on the request path: a rule's short deadline by default.
            PluginKind::Rule | PluginKind::Responder => self.config.rule_defaults,
            PluginKind::Action => self.config.action_defaults,
        };
        let limits = self.config.clamp(spec.limits.unwrap_or(defaults));
        let outbound = outbound_grant(&spec)?;
        let key = (spec.kind, reference.clone());
        let plugin = Arc::new(LoadedPlugin {
            tag: format!("{}@{}", id.reference, &id.version[..12]).into(),
            id: id.clone(),
            spec,
            pre,
            limits,
            loaded_at: SystemTime::now(),
            outbound,
        });
        let previous = {
            let _writer = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
            if !self.is_current(&key, generation) {
                tracing::info!(plugin = %id.reference, version = %&id.version[..12], "a later load or unload of this plugin started meanwhile; this version is discarded");
                return Ok(LoadOutcome::Superseded(id));
            }
            let mut map = Map::clone(&self.plugins.load());
            let previous = map.insert(key.clone(), plugin);
            self.plugins.store(Arc::new(map));
            previous
        };
        tracing::info!(plugin = %id.reference, kind = %key.0, version = %&id.version[..12], "plugin loaded");
        if let Compiled::Cached(path) = code
            && let Some(dir) = path.parent()
        {
            self.evict(dir);
        }
        Ok(match previous {
            Some(_) => LoadOutcome::Replaced(id),
            None => LoadOutcome::Added(id),
        })
    }

    fn cache_path(&self, dir: &Path, version: &str) -> PathBuf {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        dir.join(format!("wasmtime-{:016x}", hasher.finish()))
            .join(format!("{version}.cwasm"))
    }

    /// Keeps the compile cache under [`crate::LoadLimits::cache_max_bytes`]: deletes the
    /// folders of other engine versions (this engine cannot use them), leftover temporary
    /// files, and then the least recently used entries that no loaded or loading version
    /// uses. `dir` is this engine's folder.
    fn evict(&self, dir: &Path) {
        let in_use: std::collections::HashSet<String> = self
            .plugins
            .load()
            .values()
            .map(|p| format!("{}.cwasm", p.id.version))
            .collect();
        let report = crate::cache::evict(dir, self.config.load.cache_max_bytes, &in_use);
        if report.removed > 0 {
            tracing::info!(
                removed = report.removed,
                freed_bytes = report.freed_bytes,
                kept_bytes = report.kept_bytes,
                "compile cache trimmed"
            );
        }
    }

    /// Removes a plugin. Calls in flight finish; new calls get [`crate::PluginError::NotFound`].
    /// A load of it in progress is discarded. Returns whether it was loaded.
    pub fn unload(&self, kind: PluginKind, reference: &str) -> bool {
        let key = (kind, reference.to_owned());
        let _writer = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut map = Map::clone(&self.plugins.load());
        let removed = map.remove(&key).is_some();
        if removed {
            self.plugins.store(Arc::new(map));
            tracing::info!(plugin = %reference, %kind, "plugin unloaded");
        }
        if let Ok(mut status) = self.status.lock() {
            // Keep the generation counter, so that a load in progress sees it moved on.
            if let Some(entry) = status.get_mut(&key) {
                entry.generation += 1;
                entry.loading = None;
                entry.last_error = None;
                entry.kind = None;
            }
        }
        self.loaded.notify_waiters();
        removed
    }

    /// Marks a plugin as loading; returns the load's generation.
    fn begin_loading(&self, key: &(PluginKind, String)) -> u64 {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let entry = status.entry(key.clone()).or_default();
        entry.kind = Some(key.0);
        entry.generation += 1;
        entry.loading = Some(entry.generation);
        entry.generation
    }

    /// Records how a load ended, if it is still the latest of its plugin, and wakes waiters.
    fn end_loading(&self, key: &(PluginKind, String), generation: u64, error: Option<&LoadError>) {
        if let Ok(mut status) = self.status.lock()
            && let Some(entry) = status.get_mut(key)
            && entry.generation == generation
        {
            entry.loading = None;
            entry.last_error = error.map(|e| (e.to_string(), SystemTime::now()));
        }
        self.loaded.notify_waiters();
    }

    /// Whether `generation` is still the latest load of `key`.
    fn is_current(&self, key: &(PluginKind, String), generation: u64) -> bool {
        self.status
            .lock()
            .map(|s| s.get(key).is_some_and(|e| e.generation == generation))
            .unwrap_or(false)
    }

    /// Whether a load of `key` is in progress.
    fn is_loading(&self, kind: PluginKind, reference: &str) -> bool {
        self.status.lock().is_ok_and(|s| {
            s.get(&(kind, reference.to_owned()))
                .is_some_and(|e| e.loading.is_some())
        })
    }

    /// How many compiles are running, abandoned ones included.
    pub fn compiles_running(&self) -> usize {
        self.config
            .load
            .parallel_compiles
            .max(1)
            .saturating_sub(self.compiles.available_permits())
    }

    /// How many plugins are loading right now.
    pub fn loading(&self) -> usize {
        self.status
            .lock()
            .map(|s| s.values().filter(|e| e.loading.is_some()).count())
            .unwrap_or(0)
    }

    /// The plugin a call needs: the version serving, or, when it has none yet but is loading,
    /// the version being loaded, waited for up to [`crate::LoadLimits::loading_wait`].
    pub(crate) async fn find(
        &self,
        kind: PluginKind,
        reference: &str,
    ) -> Result<Arc<LoadedPlugin>, crate::PluginError> {
        let wait = self.config.load.loading_wait;
        let started = std::time::Instant::now();
        loop {
            let notified = self.loaded.notified();
            tokio::pin!(notified);
            // Registered before looking, so a load that ends in between still wakes us.
            notified.as_mut().enable();
            if let Some(plugin) = self.lookup(kind, reference) {
                return Ok(plugin);
            }
            if !self.is_loading(kind, reference) {
                return Err(crate::PluginError::NotFound {
                    reference: reference.to_owned(),
                });
            }
            let waited = started.elapsed();
            let still_loading = || crate::PluginError::Loading {
                reference: reference.to_owned(),
                waited: started.elapsed(),
            };
            let Some(left) = wait.checked_sub(waited) else {
                return Err(still_loading());
            };
            if tokio::time::timeout(left, notified).await.is_err() {
                return Err(still_loading());
            }
        }
    }

    /// Every plugin that is loaded or failed to load, sorted by kind and reference.
    pub fn list(&self) -> Vec<PluginInfo> {
        let map = self.plugins.load();
        let status = self.status.lock().map(|s| {
            s.iter()
                .filter(|(_, v)| v.kind.is_some())
                .map(|(k, v)| (k.clone(), (v.loading.is_some(), v.last_error.clone())))
                .collect::<HashMap<_, _>>()
        });
        let status = status.unwrap_or_default();
        let mut keys: Vec<_> = map.keys().chain(status.keys()).cloned().collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .map(|key| {
                let (loading, failure) = status.get(&key).cloned().unwrap_or_default();
                let loaded = map.get(&key).map(Arc::as_ref);
                info(key.clone(), loaded, loading, failure)
            })
            .collect()
    }

    /// The [`Runtime::list`] row of one plugin, if it is loaded or was tried.
    pub fn info(&self, kind: PluginKind, reference: &str) -> Option<PluginInfo> {
        let key = (kind, reference.to_owned());
        let loaded = self.plugins.load().get(&key).cloned();
        let (loading, failure) = self
            .status
            .lock()
            .ok()
            .and_then(|s| {
                s.get(&key)
                    .filter(|v| v.kind.is_some())
                    .map(|v| (v.loading.is_some(), v.last_error.clone()))
            })
            .unwrap_or_default();
        if loaded.is_none() && !loading && failure.is_none() {
            return None;
        }
        Some(info(key, loaded.as_deref(), loading, failure))
    }

    /// The version serving `reference`, if loaded.
    pub fn get(&self, kind: PluginKind, reference: &str) -> Option<PluginVersion> {
        self.plugins
            .load()
            .get(&(kind, reference.to_owned()))
            .map(|p| p.id.clone())
    }

    pub(crate) fn lookup(&self, kind: PluginKind, reference: &str) -> Option<Arc<LoadedPlugin>> {
        // Borrowing the key avoids an allocation per call only with a custom map; the
        // allocation is ~20 ns and keeps the map simple.
        self.plugins
            .load()
            .get(&(kind, reference.to_owned()))
            .cloned()
    }
}

/// One row of [`Runtime::list`].
fn info(
    key: (PluginKind, String),
    loaded: Option<&LoadedPlugin>,
    loading: bool,
    failure: Option<(String, SystemTime)>,
) -> PluginInfo {
    PluginInfo {
        state: match (loaded, loading) {
            (Some(_), _) => PluginState::Ready,
            (None, true) => PluginState::Loading,
            (None, false) => PluginState::Failed,
        },
        loading,
        reference: key.1,
        kind: key.0,
        version: loaded.map(|p| p.id.version.clone()),
        wit: loaded.map(|p| p.pre.wit.as_str()),
        path: loaded.map(|p| p.spec.path.clone()),
        loaded_at: loaded.map(|p| rfc3339(p.loaded_at)),
        timeout_ms: loaded.map(|p| p.limits.timeout.as_millis() as u64),
        memory_bytes: loaded.map(|p| p.limits.memory_bytes),
        last_error: failure.as_ref().map(|(e, _)| e.clone()),
        last_error_at: failure.map(|(_, at)| rfc3339(at)),
    }
}

/// Whether `path` holds a component precompiled by wasmtime (and so by this host's cache).
fn is_host_precompiled(path: &Path) -> bool {
    matches!(
        Engine::detect_precompiled_file(path),
        Ok(Some(wasmtime::Precompiled::Component))
    )
}

/// Writes to a temporary file in the same directory, then renames: readers never see half a file.
fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("cache path has no parent"))?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.{}.tmp", std::process::id(), rand_suffix()));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

fn rand_suffix() -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::time::Instant::now().hash(&mut hasher);
    std::thread::current().id().hash(&mut hasher);
    hasher.finish()
}

/// Formats a time as RFC 3339 in UTC with microseconds, as StackStorm does.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time)
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// The parsed `allowed_outbound_hosts` of a spec, or why it is refused.
fn outbound_grant(spec: &PluginSpec) -> Result<Arc<OutboundGrant>, LoadError> {
    if spec.allowed_outbound_hosts.is_empty() {
        return Ok(Arc::new(OutboundGrant::none()));
    }
    let refused = |reason: String| LoadError::Refused {
        reference: spec.reference.clone(),
        path: spec.path.clone(),
        reason,
    };
    if spec.kind != PluginKind::Action {
        return Err(refused(format!(
            "allowed_outbound_hosts: {} components cannot make HTTP requests",
            spec.kind
        )));
    }
    OutboundGrant::parse(&spec.allowed_outbound_hosts)
        .map(Arc::new)
        .map_err(|e| refused(format!("allowed_outbound_hosts: {e}")))
}

/// A compiler or linker message on one line: wasmtime pretty-prints some details (the bytes of
/// a bad magic number) over many lines, which broke log lines and `plugin list` tables.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
