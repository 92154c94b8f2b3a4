//! Pack folders: scanning them, loading their components into the runtime, and watching them.
//!
//! A reload first rescans and publishes (quick), then loads each new or changed component in a
//! task of its own: compiles of different plugins do not wait for each other, and a call to a
//! plugin that is still loading waits for it for a bounded time (see the runtime).
//!
//! A scan reads every `<packs>/<pack>/actions/*.yaml` and `<packs>/<pack>/rules/*.yaml`, turns
//! each WASM action and each rule with a `wasm` key into a [`PluginSpec`], and reconciles the
//! runtime with that set: new or changed components are compiled and swapped in, unchanged ones
//! are left alone (their content hash is the same), and components whose documents are gone are
//! unloaded.
//!
//! A document that fails to parse keeps what it loaded last time: a broken edit never takes a
//! working plugin away. The failure is logged with its file, line and column and reported by
//! [`PackManager::reload`].
//!
//! Each reload also reads the pack configs (`<pack>/config.schema.yaml` and the values file
//! `<configs>/<pack>.yaml`, see [`crate::config`]); a refused config keeps the previous one
//! the same way, and [`PackManager::config`] serves them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use stormhook_packs::{ActionMeta, DatastoreGrant, LimitsDoc, PackConfig, RuleDoc};
use stormhook_runtime::{KvGrant, Limits, LoadOutcome, PluginKind, PluginSpec, Runtime};
use stormhook_storage::{Store, StoredTrigger};
use tokio::sync::Mutex;

use crate::config::LoadedConfig;
use crate::triggers::Webhooks;

/// How long the watcher waits for a burst of file events to settle before it rescans.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Owns the packs folder and keeps the runtime in step with it.
pub struct PackManager {
    root: PathBuf,
    runtime: Arc<Runtime>,
    /// What the last good parse of each document produced; serialises reloads.
    last_good: Mutex<HashMap<PathBuf, DocContent>>,
    /// The rules and the webhooks they register, swapped whole when either source changes.
    rules: ArcSwap<RuleSet>,
    /// Rules from the pack folders, as of the last reload.
    pack_rules: std::sync::Mutex<Vec<LoadedRule>>,
    /// Rules created through the API, as the store holds them.
    api_rules: std::sync::Mutex<Vec<LoadedRule>>,
    /// Triggers created through the API (`POST /triggers`): a rule on the same type and
    /// parameters uses the stored one.
    stored_triggers: std::sync::Mutex<Vec<StoredTrigger>>,
    /// The webhook conflicts last logged (each is logged once while it lasts).
    logged_conflicts: std::sync::Mutex<Vec<String>>,
    /// Actions from the pack folders, as of the last reload.
    actions: ArcSwap<Vec<ActionMeta>>,
    /// Components being loaded, and from what, so that a rescan does not start them again.
    in_flight: Arc<std::sync::Mutex<HashMap<(PluginKind, String), InFlight>>>,
    /// The folder of the operator's config values files (`<pack>.yaml`); none: no values.
    configs_dir: Option<PathBuf>,
    /// Each pack's validated config, as of the last reload.
    configs: ArcSwap<BTreeMap<String, LoadedConfig>>,
}

/// A component load in progress: its spec and the file as it was when the load started.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InFlight {
    spec: PluginSpec,
    stamp: FileStamp,
}

/// A file's size and modification time: enough to tell whether it changed since a load began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp(Option<(u64, std::time::SystemTime)>);

impl FileStamp {
    fn of(path: &Path) -> Self {
        Self(
            std::fs::metadata(path)
                .ok()
                .and_then(|m| Some((m.len(), m.modified().ok()?))),
        )
    }
}

/// A reload whose component loads are running: [`PendingReload::finish`] waits for them.
#[derive(Debug)]
pub struct PendingReload {
    report: ReloadReport,
    loads: Vec<tokio::task::JoinHandle<Result<LoadOutcome, stormhook_runtime::LoadError>>>,
}

impl PendingReload {
    /// Waits for every load this reload started and reports them.
    pub async fn finish(self) -> ReloadReport {
        let mut report = self.report;
        for load in self.loads {
            match load.await {
                Ok(Ok(LoadOutcome::Added(v) | LoadOutcome::Replaced(v))) => {
                    report.loaded.push(v.reference);
                }
                Ok(Ok(LoadOutcome::Unchanged(v))) => report.unchanged.push(v.reference),
                Ok(Ok(LoadOutcome::Superseded(v))) => report.superseded.push(v.reference),
                Ok(Err(err)) => report.errors.push(err.to_string()),
                Err(join) => report.errors.push(format!("a plugin load failed: {join}")),
            }
        }
        report
    }
}

/// Every rule the server knows, and what they register.
#[derive(Debug, Default)]
pub struct RuleSet {
    /// Rules from pack files (in path order), then rules from the API (by pack and name),
    /// enabled or not.
    pub rules: Vec<LoadedRule>,
    /// The webhooks those rules register.
    pub webhooks: Webhooks,
}

impl RuleSet {
    /// The rule with this ref.
    pub fn get(&self, reference: &str) -> Option<&LoadedRule> {
        self.rules.iter().find(|r| r.reference() == reference)
    }
}

/// A rule and where it came from, with the values derived from it computed once, when the
/// rule set is published.
#[derive(Debug, Clone)]
pub struct LoadedRule {
    /// The document.
    pub doc: RuleDoc,
    /// Its source.
    pub source: RuleSource,
    id: String,
    uid: String,
    reference: String,
    trigger: Arc<crate::triggers::Trigger>,
}

impl LoadedRule {
    /// A rule from `source`.
    pub fn new(doc: RuleDoc, source: RuleSource) -> Self {
        use sha2::Digest as _;
        let reference = doc.reference();
        let id = match &source {
            RuleSource::Api { id, .. } => id.clone(),
            RuleSource::Pack { .. } => {
                hex::encode(&sha2::Sha256::digest(format!("rule:{reference}").as_bytes())[..12])
            }
        };
        let uid = format!("rule:{}:{}", doc.pack, doc.name);
        let trigger = Arc::new(crate::triggers::Trigger::for_rule(
            &doc.trigger.trigger_type,
            &doc.trigger.parameters,
        ));
        Self {
            doc,
            source,
            id,
            uid,
            reference,
            trigger,
        }
    }

    /// The rule's id: stored for API rules, derived from the ref for pack rules.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `rule:<pack>:<name>`.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// `<pack>.<name>`.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// The trigger the rule's type and parameters make.
    pub fn trigger(&self) -> &crate::triggers::Trigger {
        &self.trigger
    }

    /// Whether the rule is a `backstop` rule (evaluated only when no standard rule matched).
    pub fn is_backstop(&self) -> bool {
        match &self.doc.rule_type {
            Some(serde_json::Value::Object(t)) => {
                t.get("ref").and_then(serde_json::Value::as_str) == Some("backstop")
            }
            Some(serde_json::Value::String(r)) => r == "backstop",
            _ => false,
        }
    }
}

/// Where a rule came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleSource {
    /// A file in a pack folder; edited there, not through the API.
    Pack {
        /// The file.
        file: PathBuf,
    },
    /// The rules API.
    Api {
        /// The stored rule's id.
        id: String,
        /// The user who created it.
        created_by: String,
    },
}

/// What one document contributes.
#[derive(Debug, Clone, Default)]
struct DocContent {
    specs: Vec<PluginSpec>,
    rule: Option<RuleDoc>,
    action: Option<ActionMeta>,
}

/// What one reload did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ReloadReport {
    /// References added or replaced by a new version.
    pub loaded: Vec<String>,
    /// References that were already current.
    pub unchanged: Vec<String>,
    /// References removed because their documents are gone.
    pub removed: Vec<String>,
    /// References already loading from the same file (started by an earlier reload).
    pub loading: Vec<String>,
    /// References whose load was overtaken by a later load of a newer file.
    pub superseded: Vec<String>,
    /// Documents and components that were refused, one message each.
    pub errors: Vec<String>,
}

/// One document's contribution to a scan.
type DocResult = (PathBuf, Result<DocContent, String>);

impl PackManager {
    /// A manager for `root`; nothing is loaded until [`PackManager::reload`].
    pub fn new(root: PathBuf, runtime: Arc<Runtime>) -> Self {
        Self {
            root,
            runtime,
            last_good: Mutex::default(),
            rules: ArcSwap::default(),
            pack_rules: std::sync::Mutex::default(),
            api_rules: std::sync::Mutex::default(),
            stored_triggers: std::sync::Mutex::default(),
            logged_conflicts: std::sync::Mutex::default(),
            actions: ArcSwap::default(),
            in_flight: Arc::default(),
            configs_dir: None,
            configs: ArcSwap::default(),
        }
    }

    /// The same manager, reading the packs' config values from `dir` (`<dir>/<pack>.yaml`),
    /// watched with the packs folder.
    #[must_use]
    pub fn with_configs(mut self, dir: PathBuf) -> Self {
        self.configs_dir = Some(dir);
        self
    }

    /// The folder of the config values files, if any.
    pub fn configs_dir(&self) -> Option<&Path> {
        self.configs_dir.as_deref()
    }

    /// The validated config of `pack` (defaults filled, templates not rendered, secrets in
    /// clear), as of the last reload; none when the pack has neither a schema nor values.
    pub fn config(&self, pack: &str) -> Option<Arc<PackConfig>> {
        self.configs
            .load()
            .get(pack)
            .map(|loaded| Arc::clone(&loaded.config))
    }

    /// Every pack's config, by pack, as of the last reload.
    pub fn configs(&self) -> Arc<BTreeMap<String, LoadedConfig>> {
        self.configs.load_full()
    }

    /// The packs folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Replaces the rules and the triggers that came through the API, and republishes the
    /// rule set.
    pub fn set_api_rules(&self, rules: Vec<LoadedRule>, triggers: Vec<StoredTrigger>) {
        if let Ok(mut api) = self.api_rules.lock() {
            *api = rules;
        }
        if let Ok(mut stored) = self.stored_triggers.lock() {
            *stored = triggers;
        }
        self.publish();
    }

    /// Rebuilds the rule set and its webhooks from both sources. Each rule uses the trigger
    /// `GET /triggers` lists for its type and parameters: a stored one when there is one, as
    /// StackStorm's rules use the `TriggerDB` of their type and parameters.
    fn publish(&self) {
        let mut rules: Vec<LoadedRule> = self
            .pack_rules
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        rules.extend(self.api_rules.lock().map(|r| r.clone()).unwrap_or_default());
        let stored = self
            .stored_triggers
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default();
        for rule in &mut rules {
            if let Some(found) = crate::triggers::stored_trigger_for(
                &rule.doc.trigger.trigger_type,
                &rule.doc.trigger.parameters,
                &stored,
            ) {
                rule.trigger = Arc::new(crate::triggers::Trigger::stored(found));
            }
        }
        let webhooks = Webhooks::from_rules(rules.iter().map(|r| (&r.doc, &r.trigger)));
        // Each conflict once (until it goes away), not again at every later reload.
        if let Ok(mut logged) = self.logged_conflicts.lock() {
            for conflict in webhooks.conflicts() {
                if !logged.contains(conflict) {
                    tracing::error!("refused webhook trigger: {conflict}");
                }
            }
            *logged = webhooks.conflicts().to_vec();
        }
        self.rules.store(Arc::new(RuleSet { rules, webhooks }));
    }

    /// The rules and webhooks as of the last reload.
    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.load_full()
    }

    /// The actions of the pack folders (enabled or not), as of the last reload.
    pub fn actions(&self) -> Arc<Vec<ActionMeta>> {
        self.actions.load_full()
    }

    /// The runtime the packs load into.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Rescans the packs folder, reconciles the runtime with it, and waits for the components
    /// it started loading.
    pub async fn reload(&self) -> ReloadReport {
        self.start_reload().await.finish().await
    }

    /// Rescans the packs folder and reconciles the runtime with it, without waiting for
    /// compiles: rules, webhooks and actions are published, removed plugins unloaded, and each
    /// new or changed component starts loading in a task of its own (the runtime bounds how
    /// many compile at once). A component already loading from the same file and settings is
    /// not loaded again. [`PendingReload::finish`] waits for the loads and reports them.
    pub async fn start_reload(&self) -> PendingReload {
        let mut last_good = self.last_good.lock().await;
        let root = self.root.clone();
        let defaults = (
            self.runtime.config().rule_defaults,
            self.runtime.config().action_defaults,
        );
        let docs = tokio::task::spawn_blocking(move || scan(&root, defaults))
            .await
            .unwrap_or_else(|e| {
                vec![(
                    PathBuf::new(),
                    Err(format!("scanning the packs folder failed: {e}")),
                )]
            });

        let mut report = ReloadReport::default();
        let configs = crate::config::reload(
            &self.root,
            self.configs_dir.as_deref(),
            &self.configs.load(),
            &mut report.errors,
        )
        .await;
        self.configs.store(Arc::new(configs));
        let mut next_good = HashMap::new();
        let mut desired: BTreeMap<(PluginKind, String), PluginSpec> = BTreeMap::new();
        let mut rules = Vec::new();
        let mut actions = Vec::new();
        for (doc, parsed) in docs {
            let content = match parsed {
                Ok(content) => content,
                Err(message) => {
                    tracing::error!("refused pack document: {message}");
                    report.errors.push(message);
                    // Keep what this document loaded before, if it loaded anything.
                    match last_good.get(&doc) {
                        Some(previous) => previous.clone(),
                        None => continue,
                    }
                }
            };
            if let Some(action) = &content.action {
                actions.push(action.clone());
            }
            if let Some(rule) = &content.rule {
                rules.push(LoadedRule::new(
                    rule.clone(),
                    RuleSource::Pack { file: doc.clone() },
                ));
            }
            for spec in &content.specs {
                let key = (spec.kind, spec.reference.clone());
                if let Some(first) = desired.get(&key) {
                    let message = format!(
                        "{}: {} `{}` is already defined by a document for {}; ignored",
                        doc.display(),
                        spec.kind,
                        spec.reference,
                        first.path.display()
                    );
                    tracing::error!("{message}");
                    report.errors.push(message);
                    continue;
                }
                desired.insert(key, spec.clone());
            }
            next_good.insert(doc, content);
        }
        *last_good = next_good;
        self.actions.store(Arc::new(actions));
        if let Ok(mut pack_rules) = self.pack_rules.lock() {
            *pack_rules = rules;
        }
        self.publish();

        // A component file that is gone takes its plugin away, as deleting the document does.
        desired.retain(|_, spec| {
            let present = spec.path.is_file();
            if !present {
                let message = format!(
                    "{}: component file is missing; `{}` is not offered",
                    spec.path.display(),
                    spec.reference
                );
                tracing::warn!("{message}");
                report.errors.push(message);
            }
            present
        });
        for info in self.runtime.list() {
            if !desired.contains_key(&(info.kind, info.reference.clone()))
                && self.runtime.unload(info.kind, &info.reference)
            {
                report.removed.push(info.reference);
            }
        }
        let mut loads = Vec::new();
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        in_flight.retain(|key, _| desired.contains_key(key));
        for (key, spec) in desired {
            let load = InFlight {
                stamp: FileStamp::of(&spec.path),
                spec: spec.clone(),
            };
            if in_flight.get(&key) == Some(&load) {
                report.loading.push(spec.reference);
                continue;
            }
            in_flight.insert(key.clone(), load.clone());
            let loading = self.runtime.load(spec);
            let registry = Arc::clone(&self.in_flight);
            loads.push(tokio::spawn(async move {
                let outcome = loading.await;
                let mut in_flight = registry.lock().unwrap_or_else(|p| p.into_inner());
                if in_flight.get(&key) == Some(&load) {
                    in_flight.remove(&key);
                }
                outcome
            }));
        }
        PendingReload { report, loads }
    }

    /// Watches the packs folder (and the configs folder, when it exists) and reloads after
    /// each burst of changes, until the returned watcher is stopped or dropped.
    ///
    /// # Errors
    ///
    /// The operating system refuses to watch the folder.
    pub fn watch(self: &Arc<Self>) -> notify::Result<PackWatcher> {
        use notify::Watcher as _;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| !e.kind.is_access()) {
                    let _ = tx.send(());
                }
            })?;
        watcher.watch(&self.root, notify::RecursiveMode::Recursive)?;
        if let Some(dir) = self.configs_dir.as_deref().filter(|d| d.is_dir()) {
            watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
        }
        let manager = Arc::clone(self);
        let task = tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Let a burst of events (an editor's save, a `cp` in several writes) settle.
                while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
                // The rescan is quick; the compiles it starts run on their own, so a slow
                // compile never holds up the next change (to this or any other plugin).
                let pending = manager.start_reload().await;
                tokio::spawn(async move {
                    let report = pending.finish().await;
                    if !report.loaded.is_empty() || !report.removed.is_empty() {
                        tracing::info!(loaded = ?report.loaded, removed = ?report.removed, "packs reloaded");
                    }
                });
            }
        });
        Ok(PackWatcher { watcher, task })
    }
}

/// A watch on the packs folder: the operating system's watcher and the task that reloads.
#[derive(Debug)]
pub struct PackWatcher {
    watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl PackWatcher {
    /// Stops watching and waits for a reload in progress to finish.
    pub async fn stop(self) {
        // The watcher holds the channel's sender: dropping it ends the task's loop.
        drop(self.watcher);
        let _ = self.task.await;
    }
}

/// Reads every pack document under `root`. Runs on the blocking pool.
fn scan(root: &Path, defaults: (Limits, Limits)) -> Vec<DocResult> {
    let mut docs = Vec::new();
    for pack_dir in sorted_entries(root) {
        if !pack_dir.is_dir() {
            continue;
        }
        let Some(pack) = pack_dir
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
        else {
            continue;
        };
        if pack.starts_with('.') {
            continue;
        }
        for (sub, kind) in [("actions", PluginKind::Action), ("rules", PluginKind::Rule)] {
            for file in sorted_entries(&pack_dir.join(sub)) {
                let is_yaml = file.extension().is_some_and(|e| e == "yaml" || e == "yml");
                if !is_yaml || !file.is_file() {
                    continue;
                }
                let parsed = read_doc(&file, &pack, kind, defaults);
                docs.push((file, parsed));
            }
        }
    }
    docs
}

fn read_doc(
    file: &Path,
    pack: &str,
    kind: PluginKind,
    (rule_defaults, action_defaults): (Limits, Limits),
) -> Result<DocContent, String> {
    let shown = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    let folder = file.parent().unwrap_or(Path::new("."));
    match kind {
        PluginKind::Action => {
            let meta = ActionMeta::parse(&shown, &text, pack).map_err(|e| e.to_string())?;
            if !meta.enabled {
                return Ok(DocContent {
                    action: Some(meta),
                    ..DocContent::default()
                });
            }
            let spec = PluginSpec {
                reference: meta.reference(),
                kind,
                path: folder.join(&meta.entry_point),
                limits: meta.limits.map(|l| limits(l, action_defaults)),
                kv: grant(meta.datastore.as_ref(), pack),
                events: meta.events,
                allowed_outbound_hosts: meta.allowed_outbound_hosts.clone(),
            };
            Ok(DocContent {
                specs: vec![spec],
                rule: None,
                action: Some(meta),
            })
        }
        // Rule files (responders have no documents of their own: a rule names them).
        PluginKind::Rule | PluginKind::Responder => {
            let rule = RuleDoc::parse(&shown, &text, pack).map_err(|e| e.to_string())?;
            let mut specs: Vec<PluginSpec> = if rule.enabled {
                rule_plugin_spec(&rule, folder, rule_defaults)
                    .into_iter()
                    .collect()
            } else {
                Vec::new()
            };
            // A hook's responder serves the hook whether its rule is enabled or not (disabling
            // a rule does not unregister its webhook).
            specs.extend(responder_plugin_spec(&rule, folder, rule_defaults));
            Ok(DocContent {
                specs,
                rule: Some(rule),
                action: None,
            })
        }
    }
}

/// The plugin a rule's `wasm` key names (none without one): its component in `folder`, its
/// limits over `defaults`, its datastore grant. The server and `stormhook rule test` load rule
/// components through this one function.
pub fn rule_plugin_spec(rule: &RuleDoc, folder: &Path, defaults: Limits) -> Option<PluginSpec> {
    let wasm = rule.wasm.as_ref()?;
    Some(PluginSpec {
        reference: rule.reference(),
        kind: PluginKind::Rule,
        path: folder.join(&wasm.entry_point),
        limits: wasm.limits().map(|l| limits(l, defaults)),
        kv: grant(wasm.datastore.as_ref(), &rule.pack),
        events: false,
        allowed_outbound_hosts: Vec::new(),
    })
}

/// The responder a webhook rule's `respond` parameter names (none without one): its
/// component in `folder`, under the rule's ref, with its limits over `defaults`.
pub fn responder_plugin_spec(
    rule: &RuleDoc,
    folder: &Path,
    defaults: Limits,
) -> Option<PluginSpec> {
    let policy = stormhook_senders::HookPolicy::parse(&rule.trigger.parameters).ok()??;
    let respond = policy.respond?;
    let doc = LimitsDoc {
        timeout_ms: respond.timeout_ms,
        memory_mb: respond.memory_mb,
    };
    Some(PluginSpec {
        limits: Some(limits(doc, defaults)),
        ..PluginSpec::new(
            rule.reference(),
            PluginKind::Responder,
            folder.join(&respond.entry_point),
        )
    })
}

fn limits(doc: LimitsDoc, defaults: Limits) -> Limits {
    Limits {
        timeout: doc
            .timeout_ms
            .map_or(defaults.timeout, Duration::from_millis),
        memory_bytes: doc
            .memory_mb
            .map_or(defaults.memory_bytes, |mb| mb.saturating_mul(1 << 20)),
    }
}

fn grant(doc: Option<&DatastoreGrant>, pack: &str) -> KvGrant {
    doc.map_or_else(KvGrant::default, |g| KvGrant {
        read: g.read,
        write: g.write,
        prefix: g.prefix.clone().unwrap_or_else(|| format!("{pack}.")),
        secrets: g.secrets,
    })
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.sort();
    entries
}

/// Loads the API rules and triggers from the store into the pack manager (at start and after
/// each change of either).
///
/// # Errors
///
/// The store fails. A stored rule that no longer validates is skipped with an error log.
pub async fn load_api_rules(
    store: &dyn Store,
    packs: &PackManager,
) -> Result<(), stormhook_storage::StorageError> {
    let mut rules = Vec::new();
    for stored in store.list_rules().await? {
        match RuleDoc::from_json(
            &format!("rule {}", stored.reference),
            stored.document.clone(),
        ) {
            Ok(doc) => rules.push(LoadedRule::new(
                doc,
                RuleSource::Api {
                    id: stored.id,
                    created_by: stored.created_by,
                },
            )),
            Err(e) => tracing::error!(
                "stored rule {} is invalid and is skipped: {e}",
                stored.reference
            ),
        }
    }
    packs.set_api_rules(rules, store.list_triggers().await?);
    Ok(())
}

/// Whether `rule` is evaluated on instances of `trigger`: the trigger its type and parameters
/// make, or, for a trigger type without parameters (which has one trigger), the type's ref. A
/// type with parameters (`core.st2.webhook`) is matched only through the rule's own trigger.
pub fn listens_to(rule: &LoadedRule, trigger: &str) -> bool {
    trigger == rule.trigger().reference
        || (rule.doc.trigger.parameters.is_empty() && trigger == rule.doc.trigger.trigger_type)
}
