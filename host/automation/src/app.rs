//! The composition root of the automation domain: [`Automation::start`] builds every part in
//! order and starts every background task; [`Automation::shutdown`] stops and joins them.
//!
//! Order at start: the system trigger types are registered in the store; the plugin runtime
//! starts (its datastore is the store); the packs are read and published, and their components
//! start compiling in the background (see [`Automation::plugins_loaded`]); the rules created
//! through the API are loaded; the executor recovers what a stop left behind and
//! starts; the rules engine starts; on a store shared by several nodes, the cluster tasks
//! start (leases, changes from other nodes); retention starts; the packs folder is watched.

use std::path::PathBuf;
use std::sync::Arc;

use stormhook_runtime::{Runtime, RuntimeConfig};
use stormhook_storage::ingest::Ingest;
use stormhook_storage::{StorageError, Store};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::actions::Catalog;
use crate::actions::http::HttpPolicy;
use crate::datastore::StoreDatastore;
use crate::events::{PackConfigSource, PluginEvents};
use crate::executions::Executor;
use crate::packs::{PackManager, PackWatcher, ReloadReport};
use crate::retention::Retention;
use crate::stop::Stop;

/// How many accepted events may wait for the writer before new ones get 503.
pub const INGEST_QUEUE: usize = 8192;

/// What [`Automation::start`] needs.
pub struct Settings {
    /// The durable store (already open and migrated).
    pub store: Arc<dyn Store>,
    /// The packs folder.
    pub packs_dir: PathBuf,
    /// The folder of the packs' config values files (`<pack>.yaml`, watched with the packs);
    /// none: packs get only their schema's defaults.
    pub configs_dir: Option<PathBuf>,
    /// The plugin runtime's limits, pool and compile cache.
    pub runtime: RuntimeConfig,
    /// Where `core.http` may connect.
    pub http_policy: HttpPolicy,
    /// Whether `core.local` runs shell commands (`--disable-core-local` turns it off).
    pub core_local: bool,
    /// Whether the packs folder is watched and hot-reloaded.
    pub watch: bool,
    /// How many accepted events may wait for the group-commit writer.
    pub ingest_queue: usize,
    /// How long finished records are kept.
    pub retention: Retention,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("packs_dir", &self.packs_dir)
            .field("configs_dir", &self.configs_dir)
            .field("runtime", &self.runtime)
            .field("core_local", &self.core_local)
            .field("watch", &self.watch)
            .field("ingest_queue", &self.ingest_queue)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

/// Why the automation domain could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store failed (registering trigger types, loading API rules, recovering executions).
    #[error("{context}: {source}")]
    Store {
        /// What was being done.
        context: &'static str,
        /// The store's error.
        source: StorageError,
    },
    /// The plugin runtime could not start.
    #[error("starting the WebAssembly runtime: {0}")]
    Runtime(String),
    /// The packs folder cannot be watched.
    #[error("watching {path}: {source}")]
    Watch {
        /// The packs folder.
        path: PathBuf,
        /// The watcher's error.
        source: notify::Error,
    },
}

fn store_error(context: &'static str) -> impl FnOnce(StorageError) -> StartError {
    move |source| StartError::Store { context, source }
}

/// The running automation domain: every part, and the background tasks it owns.
pub struct Automation {
    /// The durable store.
    pub store: Arc<dyn Store>,
    /// The packs folder, the rule set and, through it, the plugin runtime.
    pub packs: Arc<PackManager>,
    /// Runs executions.
    pub executor: Arc<Executor>,
    /// Group commit of accepted events.
    pub ingest: Ingest,
    /// The first reading of the packs folder, once its components are loaded.
    initial: watch::Receiver<Option<Arc<ReloadReport>>>,
    /// The task loading the first components; abandoned at shutdown.
    initial_load: JoinHandle<()>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    watcher: Option<PackWatcher>,
}

impl std::fmt::Debug for Automation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Automation")
            .field("packs", &self.packs.root())
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl Automation {
    /// Builds every part and starts every background task.
    ///
    /// # Errors
    ///
    /// The store fails, the runtime cannot start, or the packs folder cannot be watched.
    pub async fn start(settings: Settings) -> Result<Self, StartError> {
        let Settings {
            store,
            packs_dir,
            configs_dir,
            runtime,
            http_policy,
            core_local,
            watch,
            ingest_queue,
            retention,
        } = settings;
        for trigger_type in crate::triggers::system_trigger_types() {
            let known = store
                .trigger_type(&trigger_type.reference)
                .await
                .map_err(store_error("registering the system trigger types"))?;
            if known.is_none() {
                match store.insert_trigger_type(trigger_type).await {
                    // Another node sharing the store registered it at the same moment.
                    Ok(()) | Err(StorageError::Conflict { .. }) => {}
                    Err(e) => return Err(store_error("registering the system trigger types")(e)),
                }
            }
        }
        let datastore = Arc::new(StoreDatastore::new(Arc::clone(&store)));
        let runtime = Arc::new(
            Runtime::new(runtime, datastore).map_err(|e| StartError::Runtime(e.to_string()))?,
        );
        let mut packs = PackManager::new(packs_dir.clone(), runtime);
        if let Some(dir) = configs_dir {
            packs = packs.with_configs(dir);
        }
        let packs = Arc::new(packs);
        // Rules, webhooks and actions are published now; components compile in the
        // background, so the server can answer at once (calls wait for a plugin still loading).
        let pending = packs.start_reload().await;
        let (initial_tx, initial) = watch::channel(None);
        let initial_load = tokio::spawn(async move {
            let report = pending.finish().await;
            tracing::info!(
                loaded = report.loaded.len() + report.unchanged.len(),
                refused = report.errors.len(),
                "plugins loaded"
            );
            let _ = initial_tx.send(Some(Arc::new(report)));
        });
        crate::packs::load_api_rules(store.as_ref(), &packs)
            .await
            .map_err(store_error("loading the rules created through the API"))?;
        let catalog = Catalog::new(Arc::clone(&packs), core_local).with_http_policy(http_policy);
        let ingest = Ingest::start(Arc::clone(&store), ingest_queue);
        let executor = Arc::new(Executor::new(Arc::clone(&store), catalog, ingest.clone()));
        // Before any call can run: plugins' `events` and `config` imports.
        packs.runtime().attach(
            Arc::new(PluginEvents::new(
                Arc::clone(&store),
                ingest.clone(),
                &executor,
            )),
            Arc::new(PackConfigSource::new(&packs)),
        );
        let (stop, stop_rx) = watch::channel(false);
        // Woken by every commit of accepted events (and by other nodes' work, on a shared
        // store), so a new instance is evaluated at once rather than at the engine's next poll.
        let engine_wake = ingest.committed();
        let engine_held = Arc::new(crate::engine::Held::default());
        let mut tasks = executor
            .start(Stop(stop_rx.clone()))
            .await
            .map_err(store_error("starting the executor"))?;
        tasks.push(
            crate::engine::start(
                Arc::clone(&store),
                Arc::clone(&packs),
                Arc::clone(&executor),
                Arc::clone(&engine_wake),
                Arc::clone(&engine_held),
                Stop(stop_rx.clone()),
            )
            .await
            .map_err(store_error("starting the rules engine"))?,
        );
        let stop_signal = Stop(stop_rx);
        tasks.extend(crate::cluster::start(
            &store,
            &packs,
            &executor,
            &engine_wake,
            &engine_held,
            &stop_signal,
        ));
        tasks.extend(crate::retention::start(
            Arc::clone(&store),
            retention,
            stop_signal,
        ));
        let watcher = if watch {
            Some(packs.watch().map_err(|source| StartError::Watch {
                path: packs_dir.clone(),
                source,
            })?)
        } else {
            None
        };
        Ok(Self {
            initial_load,
            store,
            packs,
            executor,
            ingest,
            initial,
            stop,
            tasks,
            watcher,
        })
    }

    /// What the first reading of the packs folder loaded and refused, once every component
    /// it found has loaded or failed (the server serves meanwhile).
    pub async fn plugins_loaded(&self) -> Arc<ReloadReport> {
        let mut initial = self.initial.clone();
        match initial.wait_for(Option::is_some).await {
            Ok(report) => report.clone().unwrap_or_default(),
            // The loading task ended without a report (it panicked, or the domain stopped).
            Err(_) => Arc::new(ReloadReport {
                errors: vec!["loading the packs' components did not finish".into()],
                ..ReloadReport::default()
            }),
        }
    }

    /// Stops the rules engine (after the batch it is recording), the executor's worker and
    /// recorder (after recording the completions already received) and the packs watcher, and
    /// waits for them. Executions still running are left `running`; the next start marks them
    /// `abandoned`, as after a crash.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        self.initial_load.abort();
        if let Some(watcher) = self.watcher.take() {
            watcher.stop().await;
        }
        for task in self.tasks.drain(..) {
            if let Err(e) = task.await
                && e.is_panic()
            {
                tracing::error!("a background task panicked: {e}");
            }
        }
        tracing::debug!("automation stopped");
    }
}

impl Drop for Automation {
    /// Dropped without [`Automation::shutdown`]: the tasks are told to stop, not waited for.
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
