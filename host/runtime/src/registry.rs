//! Loading, caching, hot-swapping and listing plugins.
//!
//! The registry is an immutable map behind an [`ArcSwap`]: a call takes a snapshot of the one
//! plugin it needs (an `Arc`) and finishes on that version even if a new one is swapped in
//! meanwhile. Writers (load, unload) are serialised by a mutex and never block callers.
//! Compilation runs on the blocking pool, never on a caller's task.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use crate::bindings::{action::ActionPre, rule::RulePre};
use crate::config::{Limits, RuntimeConfig};
use crate::datastore::Datastore;
use crate::engine::{self, AllocationMode};
use crate::error::LoadError;
use crate::host::HostState;
use crate::types::{LoadOutcome, PluginInfo, PluginKind, PluginSpec, PluginVersion};

/// The pre-linked component, ready to instantiate.
#[derive(Clone)]
pub(crate) enum Pre {
    Rule(RulePre<HostState>),
    Action(ActionPre<HostState>),
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
}

#[derive(Default)]
struct Status {
    kind: Option<PluginKind>,
    last_error: Option<(String, SystemTime)>,
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
    mode: AllocationMode,
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
        let mut rule_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut rule_linker).map_err(io)?;
        crate::bindings::rule::Rule::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut rule_linker,
            |s| s,
        )
        .map_err(io)?;
        let mut action_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut action_linker).map_err(io)?;
        crate::bindings::action::Action::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
            &mut action_linker,
            |s| s,
        )
        .map_err(io)?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(config.max_instances as usize)),
            engine,
            config,
            rule_linker,
            action_linker,
            plugins: ArcSwap::default(),
            write_lock: Mutex::new(()),
            status: Mutex::default(),
            datastore,
            mode,
        })
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

    /// Loads or replaces a plugin. Compilation runs on the blocking pool; the swap is atomic.
    ///
    /// Calls in flight finish on the version they started with. When the new version fails,
    /// the old one (if any) keeps serving and the failure is recorded for [`Runtime::list`].
    ///
    /// # Errors
    ///
    /// [`LoadError`] when the file cannot be read, compiled, cached or linked.
    pub async fn load(self: &Arc<Self>, spec: PluginSpec) -> Result<LoadOutcome, LoadError> {
        let this = Arc::clone(self);
        let key = (spec.kind, spec.reference.clone());
        let result = tokio::task::spawn_blocking(move || this.load_blocking(spec))
            .await
            .unwrap_or_else(|join| {
                Err(LoadError::Compile {
                    reference: key.1.clone(),
                    path: PathBuf::new(),
                    reason: format!("compiler task failed: {join}"),
                })
            });
        if let Err(err) = &result {
            tracing::error!(plugin = %key.1, kind = %key.0, "refused new plugin version: {err}");
            self.set_status(&key, Some(err.to_string()));
        }
        result
    }

    /// Loads synchronously; runs on the blocking pool.
    fn load_blocking(&self, spec: PluginSpec) -> Result<LoadOutcome, LoadError> {
        let reference = spec.reference.clone();
        let bytes = std::fs::read(&spec.path).map_err(|source| LoadError::Read {
            reference: reference.clone(),
            path: spec.path.clone(),
            source,
        })?;
        let version = hex::encode(Sha256::digest(&bytes));
        let key = (spec.kind, reference.clone());
        let id = PluginVersion {
            reference: reference.clone(),
            version,
        };
        if let Some(current) = self.plugins.load().get(&key)
            && current.id == id
            && current.spec == spec
        {
            return Ok(LoadOutcome::Unchanged(id));
        }
        let component = self.compile(&spec, &id, &bytes)?;
        let link_err = |e: wasmtime::Error| LoadError::Link {
            reference: reference.clone(),
            path: spec.path.clone(),
            world: spec.kind.world(),
            reason: one_line(&format!("{e:#}")),
        };
        let pre = match spec.kind {
            PluginKind::Rule => Pre::Rule(
                RulePre::new(
                    self.rule_linker
                        .instantiate_pre(&component)
                        .map_err(link_err)?,
                )
                .map_err(link_err)?,
            ),
            PluginKind::Action => Pre::Action(
                ActionPre::new(
                    self.action_linker
                        .instantiate_pre(&component)
                        .map_err(link_err)?,
                )
                .map_err(link_err)?,
            ),
        };
        let defaults = match spec.kind {
            PluginKind::Rule => self.config.rule_defaults,
            PluginKind::Action => self.config.action_defaults,
        };
        let limits = self.config.clamp(spec.limits.unwrap_or(defaults));
        let plugin = Arc::new(LoadedPlugin {
            tag: format!("{}@{}", id.reference, &id.version[..12]).into(),
            id: id.clone(),
            spec,
            pre,
            limits,
            loaded_at: SystemTime::now(),
        });
        let _writer = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut map = Map::clone(&self.plugins.load());
        let previous = map.insert(key.clone(), plugin);
        self.plugins.store(Arc::new(map));
        self.set_status(&key, None);
        tracing::info!(plugin = %id.reference, kind = %key.0, version = %&id.version[..12], "plugin loaded");
        Ok(match previous {
            Some(_) => LoadOutcome::Replaced(id),
            None => LoadOutcome::Added(id),
        })
    }

    /// Compiles (or fetches from the cache) and prepares copy-on-write memory images.
    fn compile(
        &self,
        spec: &PluginSpec,
        id: &PluginVersion,
        bytes: &[u8],
    ) -> Result<Component, LoadError> {
        let compile_err = |e: wasmtime::Error| LoadError::Compile {
            reference: id.reference.clone(),
            path: spec.path.clone(),
            reason: one_line(&format!("{e:#}")),
        };
        let component = match &self.config.cache_dir {
            None => Component::new(&self.engine, bytes).map_err(compile_err)?,
            Some(dir) => {
                let path = self.cache_path(dir, &id.version);
                let cache_err = |reason: String| LoadError::Cache {
                    reference: id.reference.clone(),
                    path: path.clone(),
                    reason,
                };
                if !is_host_precompiled(&path) {
                    let code = self
                        .engine
                        .precompile_component(bytes)
                        .map_err(compile_err)?;
                    write_atomically(&path, &code).map_err(|e| cache_err(e.to_string()))?;
                }
                // SAFETY: `deserialize_file` trusts the file to be wasmtime's own output, because it
                // maps native code. Only paths computed here are ever passed: files this host
                // wrote (atomically, in its private cache directory keyed by the engine's
                // compatibility hash), never a `.cwasm` from a pack folder.
                #[allow(unsafe_code)]
                let loaded = unsafe { Component::deserialize_file(&self.engine, &path) };
                loaded.map_err(|e| cache_err(one_line(&format!("{e:#}"))))?
            }
        };
        component
            .initialize_copy_on_write_image()
            .map_err(compile_err)?;
        Ok(component)
    }

    fn cache_path(&self, dir: &Path, version: &str) -> PathBuf {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        dir.join(format!("wasmtime-{:016x}", hasher.finish()))
            .join(format!("{version}.cwasm"))
    }

    /// Removes a plugin. Calls in flight finish; new calls get [`crate::PluginError::NotFound`].
    /// Returns whether it was loaded.
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
            status.remove(&key);
        }
        removed
    }

    /// Every plugin that is loaded or failed to load, sorted by kind and reference.
    pub fn list(&self) -> Vec<PluginInfo> {
        let map = self.plugins.load();
        let status = self.status.lock().map(|s| {
            s.iter()
                .map(|(k, v)| (k.clone(), (v.kind, v.last_error.clone())))
                .collect::<HashMap<_, _>>()
        });
        let status = status.unwrap_or_default();
        let mut keys: Vec<_> = map.keys().chain(status.keys()).cloned().collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .map(|key| {
                let loaded = map.get(&key);
                let failure = status.get(&key).and_then(|(_, e)| e.clone());
                PluginInfo {
                    reference: key.1.clone(),
                    kind: key.0,
                    version: loaded.map(|p| p.id.version.clone()),
                    path: loaded.map(|p| p.spec.path.clone()),
                    loaded_at: loaded.map(|p| rfc3339(p.loaded_at)),
                    timeout_ms: loaded.map(|p| p.limits.timeout.as_millis() as u64),
                    memory_bytes: loaded.map(|p| p.limits.memory_bytes),
                    last_error: failure.as_ref().map(|(e, _)| e.clone()),
                    last_error_at: failure.map(|(_, at)| rfc3339(at)),
                }
            })
            .collect()
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

    fn set_status(&self, key: &(PluginKind, String), error: Option<String>) {
        if let Ok(mut status) = self.status.lock() {
            let entry = status.entry(key.clone()).or_default();
            entry.kind = Some(key.0);
            entry.last_error = error.map(|e| (e, SystemTime::now()));
        }
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

/// A compiler or linker message on one line: wasmtime pretty-prints some details (the bytes of
/// a bad magic number) over many lines, which broke log lines and `plugin list` tables.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
