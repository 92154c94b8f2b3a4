//! Executions (`docs/st2-api.md` §4): requesting an action run, running it after the
//! answer (from the durable store, never on the request path), cancelling it, and waiting for
//! it.
//!
//! Life of an execution: `requested -> scheduled -> running -> succeeded | failed | timeout |
//! abandoned`, or `canceled` (from `requested`/`delayed`/`scheduled`, or `running -> canceling
//! -> canceled`). One requested with a `delay` is stored `delayed`, with the time it is due
//! (`due_at`); the worker moves those due back to `requested` (a conditional update, so of
//! several nodes one moves each) and sleeps until the earliest of the others is due. They are
//! in the store like any other, so a stop does not lose them. Every move is a conditional update in the store (it applies only from the
//! expected status), so two movers never both win, and each appends to the execution's `log`.
//!
//! A request is checked and stored before the caller's answer: the action exists and is
//! enabled, no immutable parameter is overridden, the parameters render (Jinja, with `st2kv`,
//! `action_context` and `config_context`, the config of the action's pack) and then validate
//! against the action's schema (runner parameters merged under the action's). A rendering
//! failure still stores the execution, `failed`, as StackStorm does.
//!
//! Every completed execution dispatches a trigger instance of `core.st2.generic.actiontrigger`
//! (payload `{execution_id, status, start_timestamp, action_name, action_ref, runner_ref,
//! parameters, result}`), as StackStorm's action sensor does, so rules can follow actions.
//!
//! The [`Executor`] worker takes `requested` executions oldest first, up to
//! [`MAX_PARALLEL`] at a time ([`MAX_PARALLEL_HEAVY`] of them processes or HTTP requests),
//! and claims every one that gets a free slot in one transaction;
//! completed executions are recorded together in one transaction too (`record`). After a crash,
//! executions left `scheduled` are requested again; executions left `running` become
//! `abandoned` (they may have had effects, so they are not run twice).
//!
//! # Layout
//!
//! - this module: the requests (`request` for the API, `for_rule` for the engine), their
//!   validation and rendering, `wait` and `cancel`.
//! - `worker`: recovery at start, the worker, the run of one execution, the recorder and the
//!   action trigger.
//! - `document`: the execution's document, its status moves, masking.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};
use stormhook_rules::template::Renderer;
use stormhook_storage::ingest::Ingest;
use stormhook_storage::{
    Execution, ExecutionStatus, InstanceStatus, StorageError, Store, TriggerInstance, ids,
};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

use crate::actions::{Action, Catalog, Outcome, RunnerType};
use crate::packs::LoadedRule;

mod document;
mod worker;

use document::{
    delay, finish, new_execution, parameters_schema, runner_of, set_result, transition,
};
pub use document::{mask, mask_secret_output, secret_parameters};

/// How many executions run at once: WASM calls and the built-in runners are cheap (the
/// plugin runtime bounds its own instances and CPU), so a burst runs many at once.
pub const MAX_PARALLEL: usize = 256;
/// How many executions stored on this node may wait in memory for the worker; past that they
/// wait in the store (which the worker reads when it has room).
pub const MAX_READY: usize = 4096;
/// How many of them may be runs of `core.local` (a process each) or `core.http` (a connection
/// each) at once; the others wait for a slot of these, `running`.
pub const MAX_PARALLEL_HEAVY: usize = 16;
/// The user rule-triggered executions run as (StackStorm's system user).
pub const SYSTEM_USER: &str = "stanley";

/// Why an execution could not be requested.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// No such action.
    #[error("Action \"{0}\" cannot be found.")]
    UnknownAction(String),
    /// The action is disabled.
    #[error("Unable to execute. Action \"{0}\" is disabled.")]
    Disabled(String),
    /// The parameters are not acceptable (nothing was stored).
    #[error("{0}")]
    Invalid(String),
    /// The parameters did not render; the execution was stored as `failed`.
    #[error("{message}")]
    RenderFailed {
        /// Why.
        message: String,
        /// The failed execution.
        execution: Box<Execution>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StorageError),
}

/// Why an execution could not be cancelled.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    /// No such execution.
    #[error("Unable to identify resource with id \"{0}\".")]
    NotFound(String),
    /// It already completed.
    #[error("Action cannot be canceled. State = {0}.")]
    Completed(ExecutionStatus),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StorageError),
}

/// Why an execution's status or result could not be set.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// No such execution.
    #[error("Unable to identify resource with id \"{0}\".")]
    NotFound(String),
    /// It already completed.
    #[error("Execution is already in completed state.")]
    Completed,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StorageError),
}

/// What a caller asks for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The action ref.
    pub action: String,
    /// Parameters as given (templates allowed).
    pub parameters: Map<String, Value>,
    /// Who asks.
    pub user: String,
    /// Context given by the caller (merged under the server's `user` and `pack`).
    pub context: Map<String, Value>,
    /// StackStorm's `delay`: how long (in milliseconds) the execution waits, `delayed`,
    /// before it is requested (0: it is requested at once).
    pub delay: u64,
}

/// The action a rule requests, and why it could not be requested when it could not.
#[derive(Debug)]
pub enum RuleRequest {
    /// The execution to store, `requested`.
    Requested(Execution),
    /// The parameters did not render: the execution to store, `failed`, and why.
    Failed(Execution, String),
    /// Nothing to run (unknown or disabled action, invalid parameters), and why.
    Refused(String),
}

/// Runs executions.
pub struct Executor {
    store: Arc<dyn Store>,
    catalog: Catalog,
    renderer: Renderer,
    /// New executions were requested.
    wake: Notify,
    /// Executions just stored `requested` on this node, handed over in memory so the worker
    /// claims them without reading them back (at most [`MAX_READY`]; the rest stay for the
    /// store's `requested` list).
    ready: Mutex<std::collections::VecDeque<Execution>>,
    /// Whether the store may hold `requested` executions that were not handed over (set at
    /// start, on an overflow of `ready`, and by [`Executor::notify`]).
    look_in_store: std::sync::atomic::AtomicBool,
    /// Whether the store may hold `delayed` executions due earlier than [`Executor::next_due`]
    /// says (set at start, when one is stored, and by [`Executor::notify`]): the worker reads
    /// when the earliest is due again.
    look_for_delayed: std::sync::atomic::AtomicBool,
    /// When the earliest `delayed` execution is due, as last read from the store.
    next_due: Mutex<Option<String>>,
    /// An execution moved (waiters look again).
    moved: Notify,
    /// Cancel signals of the runs in progress.
    cancels: Mutex<HashMap<String, oneshot::Sender<()>>>,
    /// The executions this node claimed and has not recorded the end of yet: on a shared
    /// store, the claims whose leases it renews.
    held: Mutex<std::collections::HashSet<String>>,
    slots: Arc<Semaphore>,
    /// The [`MAX_PARALLEL_HEAVY`] slots of `core.local` and `core.http` runs.
    heavy_slots: Arc<Semaphore>,
    hostname: String,
    /// Group commit, for the action triggers.
    ingest: Ingest,
    /// Completed executions, to [`Executor::record`].
    finished: mpsc::UnboundedSender<Execution>,
    /// Its receiving end, until [`Executor::start`] takes it.
    finished_rx: Mutex<Option<mpsc::UnboundedReceiver<Execution>>>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor").finish_non_exhaustive()
    }
}

/// `st2kv` for templates: `{system: {name: value}}`.
pub async fn datastore_context(store: &dyn Store) -> Value {
    let values: Map<String, Value> = store
        .kv_all()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    json!({ "system": values })
}

impl Executor {
    /// An executor over `store`, running the actions of `catalog`; `ingest` commits the action
    /// triggers.
    pub fn new(store: Arc<dyn Store>, catalog: Catalog, ingest: Ingest) -> Self {
        let (finished, finished_rx) = mpsc::unbounded_channel();
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        Self {
            renderer: Renderer::new()
                .with_decrypt_kv(crate::datastore::kv_decrypter(Arc::clone(&store))),
            store,
            catalog,
            wake: Notify::new(),
            ready: Mutex::default(),
            look_in_store: std::sync::atomic::AtomicBool::new(true),
            look_for_delayed: std::sync::atomic::AtomicBool::new(true),
            next_due: Mutex::new(None),
            moved: Notify::new(),
            cancels: Mutex::default(),
            held: Mutex::default(),
            slots: Arc::new(Semaphore::new(MAX_PARALLEL)),
            heavy_slots: Arc::new(Semaphore::new(MAX_PARALLEL_HEAVY)),
            hostname,
            ingest,
            finished,
            finished_rx: Mutex::new(Some(finished_rx)),
        }
    }

    /// The actions this executor runs.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Checks a caller's request, stores the execution (`requested`, or `delayed` until its
    /// `delay` passed) and returns it.
    ///
    /// # Errors
    ///
    /// [`RequestError`] with StackStorm's messages.
    pub async fn request(&self, req: Request) -> Result<Execution, RequestError> {
        let action = self
            .catalog
            .get(&req.action)
            .ok_or_else(|| RequestError::UnknownAction(req.action.clone()))?;
        if !action.enabled {
            return Err(RequestError::Disabled(action.reference));
        }
        let runner = runner_of(&action)?;
        let mut context = req.context.clone();
        // `create_request`: an execution started by another one runs as the parent's user.
        let user = context
            .get("parent")
            .and_then(|parent| parent.get("user"))
            .and_then(Value::as_str)
            .filter(|user| !user.is_empty())
            .map_or(req.user, str::to_owned);
        context.insert("user".into(), json!(user));
        context.insert("pack".into(), json!(action.pack));
        let kv = datastore_context(self.store.as_ref()).await;
        let mut render_ctx = Map::new();
        let config = crate::config::context(
            self.catalog.packs().config(&action.pack),
            &action.pack,
            &kv,
            &self.renderer,
        );
        render_ctx.insert("st2kv".into(), kv);
        render_ctx.insert("action_context".into(), Value::Object(context.clone()));
        render_ctx.insert("config_context".into(), config);
        let id = ids::object_id();
        let mut execution = new_execution(
            &id,
            &action,
            runner,
            &req.parameters,
            Value::Object(context),
            Some(user),
        );
        match self.prepare(
            &mut execution,
            &action,
            runner,
            &req.parameters,
            &render_ctx,
        ) {
            Ok(()) => {
                let trace = self.start_trace(&mut execution).await?;
                if req.delay > 0 {
                    delay(&mut execution, req.delay);
                }
                self.store
                    .insert_execution(&execution, trace.as_ref())
                    .await?;
                if execution.status == ExecutionStatus::Delayed {
                    // Stored first: the worker's next look finds it.
                    self.look_for_delayed
                        .store(true, std::sync::atomic::Ordering::Release);
                    self.wake.notify_one();
                } else {
                    self.hand_over(vec![execution.clone()]);
                }
                Ok(execution)
            }
            Err(Prepared::Invalid(message)) => Err(RequestError::Invalid(message)),
            Err(Prepared::RenderFailed(message)) => {
                let trace = self.start_trace(&mut execution).await?;
                self.store
                    .insert_execution(&execution, trace.as_ref())
                    .await?;
                self.moved.notify_waiters();
                Err(RequestError::RenderFailed {
                    message,
                    execution: Box::new(execution),
                })
            }
        }
    }

    /// The trace of an execution requested by hand, as StackStorm's
    /// `get_trace_db_by_live_action` finds or starts it; the new one to store with the
    /// execution, if any. A context that names a trace (`trace_context.id_`, `st2 run
    /// --trace-id`) joins it, and the trace must exist. A caller's `trace_context.trace_tag`
    /// (`st2 run --trace-tag`) starts a trace with that tag, named in the context
    /// (`trace_context.id_`), which links the execution to it. Otherwise the execution starts
    /// the trace of its own id, tagged `execution-<id>`: its context stays as StackStorm leaves
    /// it, and trace queries find an execution whose context names no trace in that one. (A
    /// child of another execution gets one of its own too: StackStorm puts it in its parent's.)
    ///
    /// # Errors
    ///
    /// The named trace does not exist (StackStorm's `TraceNotFoundException` messages), or
    /// the store failed.
    async fn start_trace(
        &self,
        execution: &mut Execution,
    ) -> Result<Option<stormhook_storage::Trace>, RequestError> {
        let own = stormhook_storage::Trace {
            id: execution.id.clone(),
            trace_tag: format!("execution-{}", execution.id),
            start_timestamp: execution.start_timestamp.clone(),
            trigger_instances: Vec::new(),
        };
        let Some(trace_context) = execution
            .document
            .get_mut("context")
            .and_then(|c| c.get_mut("trace_context"))
            .and_then(Value::as_object_mut)
        else {
            return Ok(Some(own));
        };
        if let Some(id) = trace_context.get("id_") {
            let id = id.as_str().map_or_else(|| id.to_string(), str::to_owned);
            if !ids::is_object_id(&id) {
                return Err(RequestError::Invalid(format!(
                    "Unable to find Trace with id=\"{id}\""
                )));
            }
            if self.store.trace(&id).await?.is_none() {
                return Err(RequestError::Invalid(format!(
                    "Unable to find the TraceDB instance. {{'id': '{id}'}}"
                )));
            }
            return Ok(None);
        }
        let Some(tag) = trace_context.get("trace_tag").and_then(Value::as_str) else {
            return Ok(Some(own));
        };
        let trace = stormhook_storage::Trace {
            id: ids::object_id(),
            trace_tag: tag.to_owned(),
            ..own
        };
        trace_context.insert("id_".into(), json!(trace.id));
        Ok(Some(trace))
    }

    /// The execution rule `rule` requests for `instance` (not stored: the engine stores it
    /// with the enforcement). `values` are what the rule component returned (`rule` in
    /// templates); `kv` is `st2kv`.
    pub fn for_rule(
        &self,
        rule: &LoadedRule,
        rule_json: Value,
        instance: &TriggerInstance,
        values: Option<Value>,
        kv: &Value,
    ) -> RuleRequest {
        let reference = &rule.doc.action.reference;
        let Some(action) = self.catalog.get(reference) else {
            return RuleRequest::Refused(format!("Action \"{reference}\" doesn't exist"));
        };
        if !action.enabled {
            return RuleRequest::Refused(format!(
                "Unable to execute. Action \"{reference}\" is disabled."
            ));
        }
        let runner = match runner_of(&action) {
            Ok(runner) => runner,
            Err(e) => return RuleRequest::Refused(e.to_string()),
        };
        let mut context = json!({
            "user": SYSTEM_USER,
            "pack": action.pack,
            "rule": {"id": rule.id(), "name": rule.doc.name},
            "trigger_instance": {"id": instance.id, "name": null},
            "trace_context": {"id_": instance.trace_id},
        });
        if instance.depth > 0 {
            // An instance a plugin emitted: its executions are as deep as it is.
            context["depth"] = json!(instance.depth);
        }
        let mut render_ctx = Map::new();
        render_ctx.insert("trigger".into(), instance.payload.clone());
        render_ctx.insert("st2kv".into(), kv.clone());
        render_ctx.insert("action_context".into(), context.clone());
        render_ctx.insert("rule".into(), values.unwrap_or_else(|| json!({})));
        render_ctx.insert(
            "config_context".into(),
            crate::config::context(
                self.catalog.packs().config(&action.pack),
                &action.pack,
                kv,
                &self.renderer,
            ),
        );
        let given = &rule.doc.action.parameters;
        let id = ids::object_id();
        let mut execution = new_execution(
            &id,
            &action,
            runner,
            given,
            context,
            Some(SYSTEM_USER.into()),
        );
        let trigger = rule.trigger();
        execution.rule_ref = Some(rule.reference().to_owned());
        execution.trigger_instance_id = Some(instance.id.clone());
        execution.document["rule"] = rule_json;
        execution.document["trigger"] = serde_json::to_value(trigger).unwrap_or(Value::Null);
        execution.document["trigger_type"] = crate::triggers::system_trigger_types()
            .iter()
            .find(|t| t.reference == trigger.trigger_type)
            .map_or_else(
                || json!({"ref": trigger.trigger_type}),
                crate::documents::trigger_type_json,
            );
        execution.document["trigger_instance"] = json!({
            "id": instance.id,
            "trigger": instance.trigger,
            "payload": instance.payload,
            "occurrence_time": instance.occurrence_time,
            "status": InstanceStatus::Processed,
        });
        match self.prepare(&mut execution, &action, runner, given, &render_ctx) {
            Ok(()) => RuleRequest::Requested(execution),
            Err(Prepared::Invalid(message)) => RuleRequest::Refused(message),
            Err(Prepared::RenderFailed(message)) => RuleRequest::Failed(execution, message),
        }
    }

    /// Renders and validates the parameters into `execution`: the document shows those given,
    /// the runner gets them all (defaults filled in). A rendering failure completes the
    /// execution as `failed` (it is still stored, as StackStorm does); invalid parameters leave
    /// it untouched (nothing is stored).
    fn prepare(
        &self,
        execution: &mut Execution,
        action: &Action,
        runner: &RunnerType,
        given: &Map<String, Value>,
        render_ctx: &Map<String, Value>,
    ) -> Result<(), Prepared> {
        let declared = action.effective_parameters(runner);
        let mut immutable: Vec<&str> = given
            .keys()
            .filter(|k| {
                declared
                    .get(*k)
                    .and_then(|s| s.get("immutable"))
                    .and_then(Value::as_bool)
                    == Some(true)
            })
            .map(String::as_str)
            .collect();
        if !immutable.is_empty() {
            immutable.sort_unstable();
            let list: Vec<String> = immutable.iter().map(|k| format!("'{k}'")).collect();
            return Err(Prepared::Invalid(format!(
                "Override of immutable parameter(s) [{}] is unsupported.",
                list.join(", ")
            )));
        }
        // An explicit `null` for a parameter with a default takes the default, before
        // rendering (StackStorm's request validation, `assign_default_values`); a template
        // that renders `null` is validated as it is.
        let mut given = given.clone();
        for (name, value) in &mut given {
            if value.is_null()
                && let Some(default) = declared.get(name).and_then(|s| s.get("default"))
            {
                *value = default.clone();
            }
        }
        let given = &given;
        let full = stormhook_rules::params::render_parameters(
            given,
            &declared,
            render_ctx,
            &self.renderer,
        )
        .map_err(|error| {
            let message = error.to_string();
            if error.is_invalid_value() {
                Prepared::Invalid(message)
            } else {
                finish(
                    execution,
                    Outcome::failed(json!({"error": message, "traceback": ""})),
                    &self.hostname,
                );
                Prepared::RenderFailed(message)
            }
        })?;
        let schema = parameters_schema(&declared);
        crate::schema::validate(&schema, &Value::Object(full.clone()))
            .map_err(Prepared::Invalid)?;
        // Those given, and those whose default is a template that rendered to something else
        // (`param.py::_cast_params_from`: `{{ st2kv.system.n | int }}` shows as its value).
        let rendered_default = |name: &str, value: &Value| {
            declared.get(name).is_some_and(|schema| {
                let default = schema.get("default");
                schema.get("immutable").and_then(Value::as_bool) != Some(true)
                    && default
                        .and_then(Value::as_str)
                        .is_some_and(|d| d.contains("{{") || d.contains("{%"))
                    && default != Some(value)
            })
        };
        let shown: Map<String, Value> = full
            .iter()
            .filter(|(k, v)| given.contains_key(*k) || rendered_default(k, v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        execution.document["parameters"] = Value::Object(shown.clone());
        execution.document["liveaction"]["parameters"] = Value::Object(shown);
        execution.run_parameters = Value::Object(full);
        Ok(())
    }

    /// Wakes the worker to look for `requested` executions in the store (stored by another
    /// node, or put back).
    pub fn notify(&self) {
        self.look_in_store
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.look_for_delayed
            .store(true, std::sync::atomic::Ordering::Release);
        self.wake.notify_one();
    }

    /// Hands executions just stored `requested` to the worker, which claims them without
    /// reading them back; the others (of other statuses) are ignored. Past [`MAX_READY`]
    /// waiting, they are left to the store's `requested` list.
    pub fn hand_over(&self, executions: impl IntoIterator<Item = Execution>) {
        let mut handed = false;
        if let Ok(mut ready) = self.ready.lock() {
            for execution in executions {
                if execution.status != ExecutionStatus::Requested {
                    continue;
                }
                if ready.len() >= MAX_READY {
                    self.look_in_store
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    break;
                }
                ready.push_back(execution);
                handed = true;
            }
        }
        if handed {
            self.wake.notify_one();
        }
    }

    /// Up to `n` executions handed over, oldest first, at most `heavy` of them on a heavy
    /// runner (`core.local`, `core.http`; the others stay in order).
    fn take_ready(&self, n: usize, mut heavy: usize) -> Vec<Execution> {
        let Ok(mut ready) = self.ready.lock() else {
            return Vec::new();
        };
        let mut taken = Vec::with_capacity(n.min(ready.len()));
        let mut kept = std::collections::VecDeque::new();
        while taken.len() < n
            && let Some(execution) = ready.pop_front()
        {
            if worker::is_heavy(&execution) {
                if heavy == 0 {
                    kept.push_back(execution);
                    continue;
                }
                heavy -= 1;
            }
            taken.push(execution);
        }
        // Those passed over go back in front, in their order.
        while let Some(execution) = kept.pop_back() {
            ready.push_front(execution);
        }
        taken
    }

    /// The execution, once it completed or at the deadline, whichever is first.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn wait(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<Option<Execution>, StorageError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let moved = self.moved.notified();
            let current = self.store.execution(id).await?;
            let done = current.as_ref().is_none_or(|e| e.status.is_completed());
            if done {
                return Ok(current);
            }
            // A poll as well as the signal: another node may run it (PostgreSQL mode).
            let poll = tokio::time::sleep(Duration::from_millis(500));
            tokio::select! {
                () = moved => {}
                () = poll => {}
                () = tokio::time::sleep_until(deadline) => return Ok(current),
            }
        }
    }

    /// Cancels an execution at the request of `user`: at once when it has not started,
    /// through `canceling` when it runs. Either way its result is at once StackStorm's
    /// `{"message": "Action canceled by user.", "user": <user>}` and its context names who
    /// canceled it (`cancelled_by`), as `action_service.request_cancellation` does.
    ///
    /// # Errors
    ///
    /// [`CancelError`]: among them an execution that completed or is already `canceling`
    /// (StackStorm's cancelable states are those before a run and `running`).
    pub async fn cancel(&self, id: &str, user: &str) -> Result<Execution, CancelError> {
        let result = json!({"message": "Action canceled by user.", "user": user});
        for _ in 0..3 {
            let mut execution = self
                .store
                .execution(id)
                .await?
                .ok_or_else(|| CancelError::NotFound(id.to_owned()))?;
            let status = execution.status;
            if status.is_completed() || status == ExecutionStatus::Canceling {
                return Err(CancelError::Completed(status));
            }
            if !execution.document["context"].is_object() {
                execution.document["context"] = json!({});
            }
            execution.document["context"]["cancelled_by"] = json!(user);
            if status.is_before_run() {
                finish(
                    &mut execution,
                    Outcome {
                        status: ExecutionStatus::Canceled,
                        result: result.clone(),
                    },
                    &self.hostname,
                );
                if self
                    .store
                    .update_execution(&execution, ExecutionStatus::BEFORE_RUN)
                    .await?
                {
                    self.moved.notify_waiters();
                    return Ok(execution);
                }
                continue;
            }
            if status == ExecutionStatus::Running {
                transition(&mut execution, ExecutionStatus::Canceling);
                set_result(&mut execution, result.clone());
                if !self
                    .store
                    .update_execution(&execution, &[ExecutionStatus::Running])
                    .await?
                {
                    continue;
                }
            }
            if let Some(signal) = self.cancels.lock().ok().and_then(|mut c| c.remove(id)) {
                let _ = signal.send(());
            }
            return Ok(execution);
        }
        self.store
            .execution(id)
            .await?
            .ok_or_else(|| CancelError::NotFound(id.to_owned()))
    }
}

impl Executor {
    /// Sets an execution's status and result at the request of `user` (StackStorm's
    /// `PUT /executions/{id}`, `docs/st2-api.md` §4.2): `canceling`/`canceled` cancel it as
    /// [`Executor::cancel`] does (and `canceled` completes one that is `canceling`); its own
    /// status changes nothing (StackStorm's `update_status` returns early); another status
    /// moves it, with `result` when given, and a completed status ends its run if it runs on
    /// this node. Without a status only the result is set.
    ///
    /// # Errors
    ///
    /// [`UpdateError`]: among them an execution that already completed.
    pub async fn update(
        &self,
        id: &str,
        status: Option<ExecutionStatus>,
        result: Option<Value>,
        user: &str,
    ) -> Result<Execution, UpdateError> {
        for _ in 0..3 {
            let mut execution = self
                .store
                .execution(id)
                .await?
                .ok_or_else(|| UpdateError::NotFound(id.to_owned()))?;
            let current = execution.status;
            if current.is_completed() {
                return Err(UpdateError::Completed);
            }
            let cancel = matches!(
                status,
                Some(ExecutionStatus::Canceling | ExecutionStatus::Canceled)
            );
            if cancel
                && !(current == ExecutionStatus::Canceling
                    && status == Some(ExecutionStatus::Canceled))
            {
                return match self.cancel(id, user).await {
                    Ok(execution) => Ok(execution),
                    Err(CancelError::NotFound(id)) => Err(UpdateError::NotFound(id)),
                    Err(CancelError::Completed(ExecutionStatus::Canceling)) => Ok(execution),
                    Err(CancelError::Completed(_)) => Err(UpdateError::Completed),
                    Err(CancelError::Store(e)) => Err(e.into()),
                };
            }
            match status {
                Some(status) if status == current => return Ok(execution),
                Some(status) if status.is_completed() => finish(
                    &mut execution,
                    Outcome {
                        status,
                        result: result.clone().unwrap_or(Value::Null),
                    },
                    &self.hostname,
                ),
                Some(status) => {
                    transition(&mut execution, status);
                    if let Some(result) = &result {
                        set_result(&mut execution, result.clone());
                    }
                }
                None => {
                    if let Some(result) = &result {
                        set_result(&mut execution, result.clone());
                    }
                }
            }
            if self.store.update_execution(&execution, &[current]).await? {
                if execution.status.is_completed()
                    && let Some(signal) = self.cancels.lock().ok().and_then(|mut c| c.remove(id))
                {
                    // Its run is not wanted any more (its end is not recorded: the
                    // execution is no longer `running`).
                    let _ = signal.send(());
                }
                self.moved.notify_waiters();
                return Ok(execution);
            }
        }
        self.store
            .execution(id)
            .await?
            .ok_or_else(|| UpdateError::NotFound(id.to_owned()))
    }
}

enum Prepared {
    Invalid(String),
    RenderFailed(String),
}
