//! Executions (`docs/st2-api.md` §4): requesting an action run, running it after the
//! answer (from the durable store, never on the request path), cancelling it, and waiting for
//! it.
//!
//! Life of an execution: `requested -> scheduled -> running -> succeeded | failed | timeout |
//! abandoned`, or `canceled` (from `requested`/`scheduled`, or `running -> canceling ->
//! canceled`). Every move is a conditional update in the store (it applies only from the
//! expected status), so two movers never both win, and each appends to the execution's `log`.
//!
//! A request is checked and stored before the caller's answer: the action exists and is
//! enabled, no immutable parameter is overridden, the parameters render (Jinja, with `st2kv`
//! and `action_context`) and then validate against the action's schema (runner parameters
//! merged under the action's). A rendering failure still stores the execution, `failed`, as
//! StackStorm does.
//!
//! Every completed execution dispatches a trigger instance of `core.st2.generic.actiontrigger`
//! (payload `{execution_id, status, start_timestamp, action_name, action_ref, runner_ref,
//! parameters, result}`), as StackStorm's action sensor does, so rules can follow actions.
//!
//! The [`Executor`] worker takes `requested` executions oldest first, up to
//! [`MAX_PARALLEL`] at a time, and claims every one that gets a free slot in one transaction;
//! completed executions are recorded together in one transaction too (`record`). After a crash, executions left `scheduled` are requested
//! again; executions left `running` become `abandoned` (they may have had effects, so they are
//! not run twice).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};
use stormhook_rules::template::Renderer;
use stormhook_storage::ingest::{Ingest, IngestError};
use stormhook_storage::{
    Execution, ExecutionQuery, ExecutionStatus, InstanceStatus, StorageError, Store,
    TriggerInstance, ids,
};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::actions::{self, Action, Catalog, Outcome, RunnerType};
use crate::packs::LoadedRule;
use crate::stop::Stop;

/// How many executions run at once.
pub const MAX_PARALLEL: usize = 16;
/// The user rule-triggered executions run as (StackStorm's system user).
pub const SYSTEM_USER: &str = "stanley";
/// Statuses from which a cancel takes effect at once.
const BEFORE_RUN: &[ExecutionStatus] = &[
    ExecutionStatus::Requested,
    ExecutionStatus::Scheduled,
    ExecutionStatus::Delayed,
];

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
    /// An execution moved (waiters look again).
    moved: Notify,
    /// Cancel signals of the runs in progress.
    cancels: Mutex<HashMap<String, oneshot::Sender<()>>>,
    slots: Arc<Semaphore>,
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
            store,
            catalog,
            renderer: Renderer::new(),
            wake: Notify::new(),
            moved: Notify::new(),
            cancels: Mutex::default(),
            slots: Arc::new(Semaphore::new(MAX_PARALLEL)),
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

    /// Checks a caller's request, stores the execution (`requested`) and returns it.
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
        context.insert("user".into(), json!(req.user));
        context.insert("pack".into(), json!(action.pack));
        let kv = datastore_context(self.store.as_ref()).await;
        let mut render_ctx = Map::new();
        render_ctx.insert("st2kv".into(), kv);
        render_ctx.insert("action_context".into(), Value::Object(context.clone()));
        let id = ids::object_id();
        let mut execution = new_execution(
            &id,
            &action,
            runner,
            &req.parameters,
            Value::Object(context),
            Some(req.user.clone()),
        );
        match self.prepare(
            &mut execution,
            &action,
            runner,
            &req.parameters,
            &render_ctx,
        ) {
            Ok(()) => {
                self.store.insert_execution(&execution).await?;
                self.wake.notify_one();
                Ok(execution)
            }
            Err(Prepared::Invalid(message)) => Err(RequestError::Invalid(message)),
            Err(Prepared::RenderFailed(message)) => {
                self.store.insert_execution(&execution).await?;
                self.moved.notify_waiters();
                Err(RequestError::RenderFailed {
                    message,
                    execution: Box::new(execution),
                })
            }
        }
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
        let context = json!({
            "user": SYSTEM_USER,
            "pack": action.pack,
            "rule": {"id": rule.id(), "name": rule.doc.name},
            "trigger_instance": {"id": instance.id, "name": null},
            "trace_context": {"id_": instance.trace_id},
        });
        let mut render_ctx = Map::new();
        render_ctx.insert("trigger".into(), instance.payload.clone());
        render_ctx.insert("st2kv".into(), kv.clone());
        render_ctx.insert("action_context".into(), context.clone());
        render_ctx.insert("rule".into(), values.unwrap_or_else(|| json!({})));
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
        execution.document["trigger"] = serde_json::to_value(&trigger).unwrap_or(Value::Null);
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
        let shown: Map<String, Value> = full
            .iter()
            .filter(|(k, _)| given.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        execution.document["parameters"] = Value::Object(shown.clone());
        execution.document["liveaction"]["parameters"] = Value::Object(shown);
        execution.run_parameters = Value::Object(full);
        Ok(())
    }

    /// Wakes the worker (the engine calls this after storing rule executions).
    pub fn notify(&self) {
        self.wake.notify_one();
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

    /// Cancels an execution: at once when it has not started, through `canceling` when it
    /// runs.
    ///
    /// # Errors
    ///
    /// [`CancelError`].
    pub async fn cancel(&self, id: &str) -> Result<Execution, CancelError> {
        for _ in 0..3 {
            let mut execution = self
                .store
                .execution(id)
                .await?
                .ok_or_else(|| CancelError::NotFound(id.to_owned()))?;
            let status = execution.status;
            if status.is_completed() {
                return Err(CancelError::Completed(status));
            }
            if status.is_before_run() {
                finish(
                    &mut execution,
                    Outcome {
                        status: ExecutionStatus::Canceled,
                        result: Value::Null,
                    },
                    &self.hostname,
                );
                if self.store.update_execution(&execution, BEFORE_RUN).await? {
                    self.moved.notify_waiters();
                    return Ok(execution);
                }
                continue;
            }
            if status == ExecutionStatus::Running {
                transition(&mut execution, ExecutionStatus::Canceling);
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

    /// Recovers from a stop and starts the worker and the recorder; they run until `stop` is
    /// asked for.
    ///
    /// # Errors
    ///
    /// The store cannot be read.
    pub(crate) async fn start(
        self: &Arc<Self>,
        stop: Stop,
    ) -> Result<Vec<JoinHandle<()>>, StorageError> {
        for (from, to) in [
            (ExecutionStatus::Scheduled, ExecutionStatus::Requested),
            (ExecutionStatus::Running, ExecutionStatus::Abandoned),
            (ExecutionStatus::Canceling, ExecutionStatus::Canceled),
        ] {
            let left = self
                .store
                .list_executions(&ExecutionQuery {
                    statuses: vec![from.as_str().to_owned()],
                    ..Default::default()
                })
                .await?;
            for mut execution in left.items {
                if to == ExecutionStatus::Requested {
                    transition(&mut execution, to);
                } else {
                    let result = json!({"error": "Stormhook stopped while the action was running; it is not run again because it may already have had effects."});
                    finish(
                        &mut execution,
                        Outcome { status: to, result },
                        &self.hostname,
                    );
                }
                self.store.update_execution(&execution, &[from]).await?;
                tracing::warn!(id = %execution.id, action = %execution.action_ref, "execution left {from} by a stop is now {to}");
            }
        }
        let mut tasks = Vec::new();
        if let Some(rx) = self.finished_rx.lock().ok().and_then(|mut rx| rx.take()) {
            tasks.push(tokio::spawn(Arc::clone(self).record(rx, stop.clone())));
        }
        tasks.push(tokio::spawn(Arc::clone(self).work(stop)));
        Ok(tasks)
    }

    async fn work(self: Arc<Self>, mut stop: Stop) {
        while !stop.requested() {
            let woken = self.wake.notified();
            let requested = match self
                .store
                .list_executions(&ExecutionQuery {
                    statuses: vec![ExecutionStatus::Requested.as_str().to_owned()],
                    ascending: true,
                    limit: Some(MAX_PARALLEL as u64),
                    ..Default::default()
                })
                .await
            {
                Ok(page) => page.items,
                Err(e) => {
                    tracing::error!("cannot read requested executions: {e}");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = stop.wait() => {}
                    }
                    continue;
                }
            };
            let found = !requested.is_empty();
            if found {
                // Wait for one free slot, then take every other free one: the executions that
                // get a slot start now, `scheduled` and `running` logged together, all claimed
                // in one durable write.
                let Ok(first) = Arc::clone(&self.slots).acquire_owned().await else {
                    return;
                };
                let mut slots = vec![first];
                while slots.len() < requested.len() {
                    match Arc::clone(&self.slots).try_acquire_owned() {
                        Ok(slot) => slots.push(slot),
                        Err(_) => break,
                    }
                }
                let batch: Vec<Execution> = requested
                    .into_iter()
                    .take(slots.len())
                    .map(|mut execution| {
                        transition(&mut execution, ExecutionStatus::Scheduled);
                        transition(&mut execution, ExecutionStatus::Running);
                        execution.document["liveaction"]["runner_info"] =
                            json!({"hostname": self.hostname, "pid": std::process::id()});
                        execution
                    })
                    .collect();
                match self
                    .store
                    .update_executions(&batch, &[ExecutionStatus::Requested])
                    .await
                {
                    Ok(claimed) => {
                        self.moved.notify_waiters();
                        for ((execution, ok), slot) in batch.into_iter().zip(claimed).zip(slots) {
                            if ok {
                                let me = Arc::clone(&self);
                                tokio::spawn(async move {
                                    me.run(execution).await;
                                    drop(slot);
                                });
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!("cannot schedule executions: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            if !found {
                tokio::select! {
                    () = woken => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = stop.wait() => {}
                }
            }
        }
    }

    /// Runs an execution that the worker moved to `running`.
    async fn run(&self, mut execution: Execution) {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut cancels) = self.cancels.lock() {
            cancels.insert(execution.id.clone(), tx);
        }
        let span = tracing::info_span!(
            "execution",
            id = %execution.id,
            action = %execution.action_ref,
            trigger_instance = %execution.trigger_instance_id.as_deref().unwrap_or("-"),
        );
        tracing::debug!(parent: &span, "execution started");
        let outcome = tokio::select! {
            outcome = self.catalog.run(&execution).instrument(span.clone()) => outcome,
            Ok(()) = rx => Outcome { status: ExecutionStatus::Canceled, result: Value::Null },
        };
        if let Ok(mut cancels) = self.cancels.lock() {
            cancels.remove(&execution.id);
        }
        // A cancel that arrived as the run ended still wins: the caller was told `canceling`.
        let canceling = matches!(
            self.store.execution(&execution.id).await,
            Ok(Some(ref e)) if e.status == ExecutionStatus::Canceling
        );
        if canceling && outcome.status != ExecutionStatus::Canceled {
            transition(&mut execution, ExecutionStatus::Canceling);
        }
        finish(&mut execution, outcome, &self.hostname);
        tracing::info!(parent: &span, status = %execution.status, "execution finished");
        let _ = self.finished.send(execution);
    }

    /// Records completed executions, every one that is waiting in one durable write, then
    /// dispatches their action triggers (group commit). A write that fails (a full disk, a
    /// locked store) is tried again, with a growing wait and together with the executions that
    /// completed meanwhile, until it succeeds: a completed execution is never dropped.
    ///
    /// At a stop, the completions already received are recorded, and then it ends.
    async fn record(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Execution>, mut stop: Stop) {
        let mut done: Vec<Execution> = Vec::new();
        loop {
            let stopping = tokio::select! {
                received = rx.recv_many(&mut done, 256) => received == 0,
                () = stop.wait() => true,
            };
            if stopping {
                while let Ok(more) = rx.try_recv() {
                    done.push(more);
                }
                if done.is_empty() {
                    return;
                }
            }
            let mut retry = crate::retry::Retry::default();
            let recorded = loop {
                let e = match self
                    .store
                    .update_executions(
                        &done,
                        &[ExecutionStatus::Running, ExecutionStatus::Canceling],
                    )
                    .await
                {
                    Ok(recorded) => break recorded,
                    Err(e) => e,
                };
                // Not the store being unavailable, and still failing: give up on the batch
                // (its executions stay `running` and are `abandoned` at the next start, as
                // before) rather than stop recording for good.
                let Some(wait) = retry.after(e.is_unavailable()) else {
                    tracing::error!(
                        executions = done.len(),
                        "cannot record the end of executions; they stay running until the next start marks them abandoned: {e}"
                    );
                    break vec![false; done.len()];
                };
                tracing::warn!(
                    executions = done.len(),
                    attempt = retry.failures(),
                    "cannot record the end of executions; trying again in {wait:?}: {e}"
                );
                // At a stop the write is not waited for: the executions stay `running` and the
                // next start marks them `abandoned`, as after a crash.
                let stopped = tokio::select! {
                    () = tokio::time::sleep(wait) => false,
                    () = stop.wait() => true,
                };
                if stopped {
                    tracing::error!(
                        executions = done.len(),
                        "stopping before the end of executions could be recorded; the next start marks them abandoned: {e}"
                    );
                    break vec![false; done.len()];
                }
                // Whatever completed meanwhile joins the same write.
                while let Ok(more) = rx.try_recv() {
                    done.push(more);
                }
            };
            self.moved.notify_waiters();
            let triggers = done
                .iter()
                .zip(recorded)
                .filter(|(_, ok)| *ok)
                .map(|(execution, _)| self.dispatch_action_trigger(execution));
            // Together, so their group commits are shared.
            futures_util::future::join_all(triggers).await;
            done.clear();
            if stopping {
                return;
            }
        }
    }

    /// Stores the `core.st2.generic.actiontrigger` instance of a completed execution.
    async fn dispatch_action_trigger(&self, execution: &Execution) {
        use crate::triggers::ACTION_TRIGGER_TYPE;
        let doc = &execution.document;
        let now = ids::now();
        let instance_id = ids::object_id();
        let trace = stormhook_storage::Trace {
            id: ids::object_id(),
            trace_tag: format!("execution-{}", execution.id),
            start_timestamp: now.clone(),
            trigger_instances: Vec::new(),
        };
        let instance = TriggerInstance {
            id: instance_id,
            trigger: ACTION_TRIGGER_TYPE.to_owned(),
            trigger_type: Some(ACTION_TRIGGER_TYPE.to_owned()),
            payload: json!({
                "execution_id": execution.id,
                "status": execution.status,
                "start_timestamp": execution.start_timestamp,
                "action_name": doc["action"]["name"],
                "action_ref": execution.action_ref,
                "runner_ref": execution.runner,
                "parameters": masked_parameters(doc),
                "result": doc.get("result").cloned().unwrap_or_else(|| json!({})),
            }),
            occurrence_time: now,
            status: InstanceStatus::Pending,
            trace_id: Some(trace.id.clone()),
        };
        let event = stormhook_storage::NewEvent::new(trace, vec![instance]);
        // Group commit: shares its fsync with webhooks and other completions. It waits for
        // room in the queue rather than being refused when webhooks fill it, and a store that
        // cannot commit now is waited out, with a growing wait.
        let mut retry = crate::retry::Retry::default();
        loop {
            match self.ingest.submit_waiting(event.clone()).await {
                Ok(()) => return,
                Err(IngestError::Unavailable(cause)) => {
                    let wait = retry.after(true).unwrap_or(crate::retry::RETRY_MAX);
                    tracing::warn!(id = %execution.id, attempt = retry.failures(), "cannot dispatch the action trigger; trying again in {wait:?}: {cause}");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    tracing::error!(id = %execution.id, "cannot dispatch the action trigger: {e}");
                    return;
                }
            }
        }
    }
}

enum Prepared {
    Invalid(String),
    RenderFailed(String),
}

fn runner_of(action: &Action) -> Result<&'static RunnerType, RequestError> {
    actions::runner_type(&action.runner_type).ok_or_else(|| {
        RequestError::Invalid(format!(
            "Action \"{}\" has an unknown runner type \"{}\".",
            action.reference, action.runner_type
        ))
    })
}

/// The JSON schema of an action's parameters (StackStorm's `additionalProperties: false`).
fn parameters_schema(declared: &Map<String, Value>) -> Value {
    let properties: Map<String, Value> = declared
        .iter()
        .map(|(name, schema)| {
            let mut schema = schema.clone();
            if let Some(obj) = schema.as_object_mut() {
                // Not JSON-schema keywords.
                for k in ["immutable", "secret", "position"] {
                    obj.remove(k);
                }
            }
            (name.clone(), schema)
        })
        .collect();
    json!({"type": "object", "properties": properties, "additionalProperties": false})
}

/// The names of an execution document's parameters that its runner or action declares
/// `secret: true`.
pub fn secret_parameters(doc: &Value) -> Vec<String> {
    [
        &doc["runner"]["runner_parameters"],
        &doc["action"]["parameters"],
    ]
    .into_iter()
    .filter_map(Value::as_object)
    .flat_map(|schemas| {
        schemas
            .iter()
            .filter(|(_, s)| s.get("secret").and_then(Value::as_bool) == Some(true))
            .map(|(k, _)| k.clone())
    })
    .collect()
}

/// Replaces the values of the `secret` parameters in `params` with `********`.
pub fn mask(params: &mut Value, secret: &[String]) {
    if let Some(params) = params.as_object_mut() {
        for name in secret {
            if let Some(value) = params.get_mut(name) {
                *value = json!("********");
            }
        }
    }
}

/// An execution's parameters with the secret ones masked, as StackStorm's notifier puts them
/// in the action trigger (`liveaction_db.get_masked_parameters()`): a trigger instance is
/// served to every API user and templated by any rule.
fn masked_parameters(doc: &Value) -> Value {
    let mut params = doc["parameters"].clone();
    mask(&mut params, &secret_parameters(doc));
    params
}

/// A new execution, `requested`, with its log's first entry.
fn new_execution(
    id: &str,
    action: &Action,
    runner: &RunnerType,
    given: &Map<String, Value>,
    context: Value,
    user: Option<String>,
) -> Execution {
    let now = ids::now();
    let document = json!({
        "id": id,
        "action": action.json(),
        "runner": runner.json(),
        "liveaction": {
            "id": ids::object_id(),
            "action": action.reference,
            "parameters": given,
            "callback": {},
            "runner_info": {},
            "action_is_workflow": false,
        },
        "status": ExecutionStatus::Requested,
        "start_timestamp": now,
        "parameters": given,
        "context": context,
        "log": [{"status": ExecutionStatus::Requested, "timestamp": now}],
    });
    Execution {
        id: id.to_owned(),
        action_ref: action.reference.clone(),
        runner: runner.name.to_owned(),
        status: ExecutionStatus::Requested,
        start_timestamp: now,
        end_timestamp: None,
        user,
        rule_ref: None,
        trigger_instance_id: None,
        run_parameters: json!({}),
        document,
    }
}

/// Moves an execution to `status` and logs the move.
fn transition(execution: &mut Execution, status: ExecutionStatus) {
    let now = ids::now();
    execution.status = status;
    execution.document["status"] = json!(status);
    if let Some(log) = execution.document["log"].as_array_mut() {
        log.push(json!({"status": status, "timestamp": now}));
    }
}

/// Completes an execution with `outcome`.
fn finish(execution: &mut Execution, outcome: Outcome, hostname: &str) {
    transition(execution, outcome.status);
    let end = ids::now();
    let doc = &mut execution.document;
    doc["end_timestamp"] = json!(end);
    if let (Some(start), Some(stop)) = (
        ids::parse_time(&execution.start_timestamp),
        ids::parse_time(&end),
    ) {
        let micros = (stop - start).num_microseconds().unwrap_or(0);
        doc["elapsed_seconds"] = json!(micros as f64 / 1e6);
    }
    if !outcome.result.is_null() {
        doc["result_size"] = json!(outcome.result.to_string().len());
        doc["result"] = outcome.result;
    }
    if doc["liveaction"]["runner_info"]
        .as_object()
        .is_none_or(Map::is_empty)
    {
        doc["liveaction"]["runner_info"] = json!({"hostname": hostname, "pid": std::process::id()});
    }
    execution.end_timestamp = Some(end);
}
