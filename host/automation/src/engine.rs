//! The rules engine: takes accepted trigger instances from the store (never from the request
//! path), evaluates the enabled rules on their trigger, and records one enforcement per matched
//! rule and per failed evaluation. The instance moves `pending -> processed`.
//!
//! For each instance, standard rules are evaluated first: their declarative criteria, then their
//! rule component if they have one. `backstop` rules run only when no standard rule matched. An
//! error (a bad regex, a key that does not parse, a trapping component) fails that rule's
//! enforcement with the reason and never stops the engine.
//!
//! A matched rule requests its action: the execution (parameters rendered with `trigger`,
//! `st2kv`, `action_context` and `rule`, the values a rule component returned) is stored in the
//! same transaction as the enforcement and the instance's new status, then the executor runs it.
//! A rendering failure stores a `failed` execution and fails the enforcement; an unknown or
//! disabled action fails the enforcement without an execution.
//!
//! # Concurrency
//!
//! One reader reads pending instances in insertion order and starts one task per instance. At
//! most [`MAX_IN_FLIGHT`] instances are held at once, from the read until their results are
//! recorded; that bounds the engine's memory. The reader reads no more instances than there are
//! free slots, so while the engine is full the rest wait in the store. Within an instance the
//! standard rules are judged concurrently, then, if none matched, the backstop rules; the
//! matches keep the rule set's order. One rule's component runs at most
//! [`COMPONENT_CONCURRENCY`] evaluations at once, so a slow or looping component (each call
//! ends at its deadline) cannot take every instance slot of the runtime: the instances waiting
//! for it wait in their own tasks, and the others go on.
//!
//! Instances are therefore not evaluated, recorded or handed to the executor in the order they
//! were accepted: an instance that only YAML rules match is recorded while an earlier one still
//! waits for a slow component.
//!
//! Each task sends its results to one recorder, which writes what has finished (up to
//! [`BATCH`] instances) in one transaction and wakes the executor: a fast instance is recorded
//! at once, not after the slowest of its batch. An instance's enforcements, executions and new
//! status are in the same transaction, so each evaluation records one enforcement per rule or
//! none.
//!
//! The reader remembers how far it got, so taking instances writes nothing; the cursor only
//! keeps it from reading again the instances in flight. After a crash every instance still
//! `pending` is evaluated again, so every accepted instance is evaluated at least once.
//! (Instances left in `processing` by earlier versions go back to `pending` at start.)
//!
//! On stop the reader stops reading; the tasks finish, except that one still waiting for a
//! component's slot gives up (a backlog for a looping component could otherwise hold the
//! shutdown for many deadlines) and leaves its instance `pending` for the next start; the
//! recorder records every result it received; then the engine ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Map, Value};
use stormhook_rules::template::Renderer;
use stormhook_storage::{
    EnforcementStatus, Execution, FinishedInstance, InstanceStatus, RuleEnforcement, Store,
    TriggerInstance, ids,
};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tracing::Instrument as _;

use crate::executions::{Executor, RuleRequest, datastore_context};
use crate::packs::{LoadedRule, PackManager};
use crate::stop::Stop;

/// How often the engine looks for new trigger instances when it found none and was not woken
/// (every commit of accepted events wakes it; this catches instances stored any other way).
const POLL: Duration = Duration::from_millis(250);
/// How many instances the reader takes at once, and how many results the recorder writes in
/// one transaction. Recording costs one transaction (one fsync), so while instances finish
/// faster than that, group commits keep the engine from competing with ingest for commits.
const BATCH: usize = 512;
/// How many instances the engine holds at once, from the read until their results are
/// recorded (being evaluated, waiting for a component, or waiting for the recorder). It bounds
/// the engine's memory: the instances, their payloads and their results.
const MAX_IN_FLIGHT: usize = 1024;
/// How many evaluations of one rule's component run at once. It keeps a backlog for one slow
/// or looping component from taking every instance slot of the runtime.
const COMPONENT_CONCURRENCY: usize = 4;

/// Starts the engine; it runs until `stop` is asked for, and then ends after recording what
/// its tasks evaluated.
///
/// # Errors
///
/// The store cannot requeue instances left in `processing`.
pub(crate) async fn start(
    store: Arc<dyn Store>,
    packs: Arc<PackManager>,
    executor: Arc<Executor>,
    wake: Arc<Notify>,
    held: Arc<Held>,
    stop: Stop,
) -> Result<JoinHandle<()>, stormhook_storage::StorageError> {
    let requeued = store.requeue_processing().await?;
    if requeued > 0 {
        tracing::warn!(
            requeued,
            "trigger instances left in processing by an earlier version are evaluated again"
        );
    }
    let engine = Arc::new(Engine {
        renderer: Renderer::new()
            .with_decrypt_kv(crate::datastore::kv_decrypter(Arc::clone(&store))),
        store,
        packs,
        executor,
        components: ComponentSlots::default(),
        wake,
        held,
    });
    Ok(tokio::spawn(engine.run(stop)))
}

/// What the engine's tasks share.
struct Engine {
    store: Arc<dyn Store>,
    packs: Arc<PackManager>,
    executor: Arc<Executor>,
    renderer: Renderer,
    components: ComponentSlots,
    /// Notified when new instances were stored elsewhere (another node's `Change::Work`): an
    /// idle reader looks at once instead of at its next poll.
    wake: Arc<Notify>,
    /// The instances held, from the read until recorded.
    held: Arc<Held>,
}

/// The `st2kv` context of one read, shared by the tasks of its instances.
struct Context {
    st2kv: Value,
    /// `{st2kv: ...}`, what criteria are rendered with.
    kv: Map<String, Value>,
}

/// A result on its way to the recorder, with the engine slot it holds until it is recorded.
type Finished = (FinishedInstance, Slot);

/// The trigger instances this engine holds, from the read until they are recorded: on a
/// shared store, the claims whose leases this node renews (`crate::cluster`). A claim that is
/// not here (the engine never received it: its answer was lost with a broken connection) is
/// not renewed, so it expires and is taken over.
#[derive(Debug, Default)]
pub(crate) struct Held(Mutex<std::collections::HashSet<String>>);

impl Held {
    /// The ids held now.
    pub(crate) fn ids(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    fn hold(self: &Arc<Self>, id: &str, permit: OwnedSemaphorePermit) -> Slot {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_owned());
        Slot {
            _permit: permit,
            id: id.to_owned(),
            held: Arc::clone(self),
        }
    }
}

/// An engine slot held by one instance; dropping it (once the instance is recorded, or given
/// up) frees the slot and the claim.
struct Slot {
    _permit: OwnedSemaphorePermit,
    id: String,
    held: Arc<Held>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.held
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl Engine {
    /// The reader: takes pending instances while there are free slots, starts a task for each,
    /// and on stop waits for the tasks and the recorder.
    async fn run(self: Arc<Self>, mut stop: Stop) {
        let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        // Every message holds a slot, so the channel never has more than MAX_IN_FLIGHT in it.
        let (finished, received) = mpsc::channel::<Finished>(MAX_IN_FLIGHT);
        let recorder = tokio::spawn(recorder(
            Arc::clone(&self.store),
            Arc::clone(&self.executor),
            received,
        ));
        let mut tasks = JoinSet::new();
        // The number of the last instance taken.
        let mut cursor = 0;
        'reading: while !stop.requested() {
            while let Some(ended) = tasks.try_join_next() {
                task_ended(ended);
            }
            // Waits for a free slot: a full engine reads nothing.
            tokio::select! {
                slot = slots.acquire() => drop(slot),
                () = stop.wait() => break,
            }
            // Only this loop takes slots, so the free ones stay free until it takes them.
            let room = slots.available_permits().min(BATCH);
            let claimed = match self.store.pending_after(cursor, room as u64).await {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::error!("rules engine cannot read pending trigger instances: {e}");
                    tokio::select! {
                        () = tokio::time::sleep(crate::retry::RETRY_MAX) => {}
                        () = stop.wait() => {}
                    }
                    continue;
                }
            };
            if claimed.is_empty() {
                tokio::select! {
                    () = tokio::time::sleep(POLL) => {}
                    () = self.wake.notified() => {}
                    () = stop.wait() => {}
                }
                continue;
            }
            let st2kv = datastore_context(self.store.as_ref()).await;
            let mut kv = Map::new();
            kv.insert("st2kv".into(), st2kv.clone());
            let context = Arc::new(Context { st2kv, kv });
            for (seq, instance) in claimed {
                // At once (see `room`); the semaphore is never closed.
                let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                    break 'reading;
                };
                cursor = cursor.max(seq);
                let id = match &instance {
                    Ok(instance) => &instance.id,
                    Err(unreadable) => &unreadable.id,
                };
                let slot = self.held.hold(id, permit);
                match instance {
                    Ok(instance) => {
                        tasks.spawn(Arc::clone(&self).finish(
                            instance,
                            Arc::clone(&context),
                            slot,
                            finished.clone(),
                            stop.clone(),
                        ));
                    }
                    Err(unreadable) => {
                        tracing::error!(
                            trigger_instance = %unreadable.id,
                            "trigger instance cannot be read, marked processing_failed: {}",
                            unreadable.reason
                        );
                        let failed = FinishedInstance {
                            id: unreadable.id,
                            status: InstanceStatus::ProcessingFailed,
                            enforcements: Vec::new(),
                            executions: Vec::new(),
                        };
                        send(&finished, (failed, slot)).await;
                    }
                }
            }
        }
        while let Some(ended) = tasks.join_next().await {
            task_ended(ended);
        }
        // The recorder ends once every sender is gone and it has recorded what it received.
        drop(finished);
        if let Err(e) = recorder.await {
            tracing::error!("the rules engine's recorder failed: {e}");
        }
    }

    /// Evaluates one instance and sends its results to the recorder.
    async fn finish(
        self: Arc<Self>,
        instance: TriggerInstance,
        context: Arc<Context>,
        slot: Slot,
        finished: mpsc::Sender<Finished>,
        stop: Stop,
    ) {
        let span = tracing::info_span!(
            "evaluate",
            trigger_instance = %instance.id,
            trigger = %instance.trigger,
        );
        let Some(matches) = self
            .evaluate(&context.kv, &instance, &stop)
            .instrument(span.clone())
            .await
        else {
            span.in_scope(|| {
                tracing::debug!("stopping: left pending, evaluated again at the next start");
            });
            return;
        };
        let (enforcements, executions) = if matches.is_empty() {
            span.in_scope(|| tracing::debug!("no rule matched"));
            (Vec::new(), Vec::new())
        } else {
            // Rendering action parameters is bounded by the templates' fuel, but a template
            // that uses it all takes tens of milliseconds: the worker thread is handed over for
            // that time, so requests on it are not held up.
            off_worker(|| span.in_scope(|| self.enforce(&context.st2kv, &instance, matches)))
        };
        if tracing::enabled!(tracing::Level::DEBUG) {
            span.in_scope(|| {
                for enforcement in &enforcements {
                    tracing::debug!(
                        rule = %enforcement.rule_ref,
                        status = %enforcement.status,
                        execution = %enforcement.execution_id.as_deref().unwrap_or("-"),
                        reason = %enforcement.failure_reason.as_deref().unwrap_or("-"),
                        "rule enforced"
                    );
                }
            });
        }
        let done = FinishedInstance {
            id: instance.id,
            status: InstanceStatus::Processed,
            enforcements,
            executions,
        };
        send(&finished, (done, slot)).await;
    }

    /// The rules `instance` matches (and those that failed on it), in the rule set's order, or
    /// `None` when the engine stopped while a rule waited for its component.
    async fn evaluate(
        &self,
        kv: &Map<String, Value>,
        instance: &TriggerInstance,
        stop: &Stop,
    ) -> Option<Vec<RuleMatch>> {
        let set = self.packs.rules();
        let candidates: Vec<&LoadedRule> = set
            .rules
            .iter()
            .filter(|r| r.doc.enabled)
            .filter(|r| listens_to(r, &instance.trigger))
            .collect();
        let mut matches = Vec::new();
        for backstop in [false, true] {
            let rules: Vec<&LoadedRule> = candidates
                .iter()
                .copied()
                .filter(|r| r.is_backstop() == backstop)
                .collect();
            let verdicts = join_all(
                rules
                    .iter()
                    .map(|rule| self.judge(kv, rule, instance, stop)),
            )
            .await;
            let mut matched = false;
            for (rule, verdict) in rules.into_iter().zip(verdicts) {
                let outcome = match verdict? {
                    Verdict::NoMatch => continue,
                    Verdict::Match(values) => {
                        matched = true;
                        Ok(values)
                    }
                    Verdict::Failed(reason) => Err(format!(
                        "Failed to match rule \"{}\" against trigger instance \"{}\": {reason}",
                        rule.reference(),
                        instance.id
                    )),
                };
                matches.push(RuleMatch {
                    rule: rule.clone(),
                    outcome,
                });
            }
            if matched {
                // A standard rule matched: no backstop rule runs.
                break;
            }
        }
        Some(matches)
    }

    /// Whether `rule` matches `instance`: its criteria, then its component; `None` when the
    /// engine stopped while it waited for a slot of the component.
    async fn judge(
        &self,
        kv: &Map<String, Value>,
        rule: &LoadedRule,
        instance: &TriggerInstance,
        stop: &Stop,
    ) -> Option<Verdict> {
        let outcome = stormhook_rules::evaluate_criteria(
            &rule.doc.criteria,
            &instance.payload,
            kv,
            &self.renderer,
        );
        if let Some(error) = outcome.error {
            return Some(Verdict::Failed(error.reason(rule.reference())));
        }
        if !outcome.matched {
            return Some(Verdict::NoMatch);
        }
        if rule.doc.wasm.is_none() {
            return Some(Verdict::Match(None));
        }
        let slots = self.components.of(rule.reference());
        let mut stop = stop.clone();
        let _slot = tokio::select! {
            slot = slots.acquire() => slot.ok()?,
            () = stop.wait() => return None,
        };
        let call = component_instance(instance);
        let report = self
            .packs
            .runtime()
            .evaluate_rule(rule.reference(), &call)
            .await;
        Some(match report.result {
            Ok(decision) if decision.matched => Verdict::Match(decision.values),
            Ok(_) => Verdict::NoMatch,
            Err(err) => Verdict::Failed(err.to_string()),
        })
    }

    /// The enforcements and executions of a trigger instance's matches.
    fn enforce(
        &self,
        st2kv: &Value,
        instance: &TriggerInstance,
        matches: Vec<RuleMatch>,
    ) -> (Vec<RuleEnforcement>, Vec<Execution>) {
        let mut enforcements = Vec::with_capacity(matches.len());
        let mut executions = Vec::new();
        for RuleMatch { rule, outcome } in matches {
            let (execution, failure_reason) = match outcome {
                Err(reason) => (None, Some(reason)),
                Ok(values) => {
                    let rule_json = crate::documents::rule_json(&rule, self.packs.root());
                    match self
                        .executor
                        .for_rule(&rule, rule_json, instance, values, st2kv)
                    {
                        RuleRequest::Requested(execution) => (Some(execution), None),
                        RuleRequest::Failed(execution, reason) => (Some(execution), Some(reason)),
                        RuleRequest::Refused(reason) => (None, Some(reason)),
                    }
                }
            };
            enforcements.push(RuleEnforcement {
                id: ids::object_id(),
                trigger_instance_id: instance.id.clone(),
                execution_id: execution.as_ref().map(|e| e.id.clone()),
                status: if failure_reason.is_some() {
                    EnforcementStatus::Failed
                } else {
                    EnforcementStatus::Succeeded
                },
                failure_reason,
                rule_ref: rule.reference().to_owned(),
                rule_id: rule.id().to_owned(),
                rule_uid: rule.uid().to_owned(),
                enforced_at: ids::now(),
            });
            executions.extend(execution);
        }
        (enforcements, executions)
    }
}

/// The slots of the rule components, one semaphore of [`COMPONENT_CONCURRENCY`] per rule,
/// made when a rule's component is first called.
#[derive(Default)]
struct ComponentSlots(Mutex<HashMap<String, Arc<Semaphore>>>);

impl ComponentSlots {
    /// The slots of `rule`'s component.
    fn of(&self, rule: &str) -> Arc<Semaphore> {
        let mut slots = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = slots.get(rule) {
            return Arc::clone(found);
        }
        // A semaphore no call holds has all its permits: forgetting it changes nothing. So the
        // map holds only the rules being evaluated, not every rule a reload ever removed.
        slots.retain(|_, held| Arc::strong_count(held) > 1);
        let made = Arc::new(Semaphore::new(COMPONENT_CONCURRENCY));
        slots.insert(rule.to_owned(), Arc::clone(&made));
        made
    }
}

/// Hands a result to the recorder.
async fn send(recorder: &mpsc::Sender<Finished>, finished: Finished) {
    if let Err(mpsc::error::SendError((lost, _))) = recorder.send(finished).await {
        tracing::error!(
            trigger_instance = %lost.id,
            "the rules engine's recorder is gone; the instance stays pending until the next start"
        );
    }
}

/// Logs an instance task that did not end normally.
fn task_ended(ended: Result<(), JoinError>) {
    if let Err(e) = ended {
        tracing::error!(
            "evaluating a trigger instance failed; it stays pending until the next start: {e}"
        );
    }
}

/// The recorder: records the results as they come, what is there at once (up to [`BATCH`])
/// in one transaction, frees their slots and hands their executions to the executor; ends when every sender is
/// gone and everything received is recorded.
async fn recorder(
    store: Arc<dyn Store>,
    executor: Arc<Executor>,
    mut received: mpsc::Receiver<Finished>,
) {
    let mut ready = Vec::with_capacity(BATCH);
    while received.recv_many(&mut ready, BATCH).await > 0 {
        let (finished, slots): (Vec<FinishedInstance>, Vec<Slot>) = ready.drain(..).unzip();
        record(store.as_ref(), &finished).await;
        drop(slots);
        // The executions just stored go to the executor in memory; one whose write failed is
        // not in the store, and its claim is simply not won.
        executor.hand_over(finished.into_iter().flat_map(|done| done.executions));
    }
}

/// Records a batch: its enforcements, executions and statuses in one transaction, retried as
/// [`crate::retry`] says. When a failure other than an unavailable store persists, the
/// instances are recorded one by one, and one whose own write still fails is marked
/// `processing_failed`, so one bad record cannot stop the engine.
async fn record(store: &dyn Store, finished: &[FinishedInstance]) {
    if write(store, finished).await {
        return;
    }
    tracing::error!(
        instances = finished.len(),
        "recording a batch keeps failing; recording its instances one by one"
    );
    for one in finished {
        if write(store, std::slice::from_ref(one)).await {
            continue;
        }
        match store
            .set_trigger_instance_status(&one.id, InstanceStatus::ProcessingFailed)
            .await
        {
            Ok(_) => tracing::error!(
                trigger_instance = %one.id,
                "its enforcements cannot be recorded; marked processing_failed"
            ),
            Err(e) => tracing::error!(
                trigger_instance = %one.id,
                "its enforcements cannot be recorded, nor its status; it stays pending until the next start: {e}"
            ),
        }
    }
}

/// Writes `finished`, retrying as [`crate::retry`] says; whether it was written.
async fn write(store: &dyn Store, finished: &[FinishedInstance]) -> bool {
    let mut retry = crate::retry::Retry::default();
    loop {
        let Err(e) = store.finish_trigger_instances(finished).await else {
            if retry.failures() > 0 {
                tracing::info!(
                    instances = finished.len(),
                    attempts = retry.failures() + 1,
                    "rule enforcements recorded after the store recovered"
                );
            }
            return true;
        };
        let Some(wait) = retry.after(e.is_unavailable()) else {
            return false;
        };
        tracing::warn!(
            instances = finished.len(),
            attempt = retry.failures(),
            "recording rule enforcements failed; trying again in {wait:?}: {e}"
        );
        tokio::time::sleep(wait).await;
    }
}

/// Runs `work`, which may block for a while, without holding up the other tasks of a
/// multi-threaded runtime's worker (`block_in_place`); on any other runtime, in place.
fn off_worker<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

enum Verdict {
    Match(Option<Value>),
    NoMatch,
    Failed(String),
}

/// A rule that matched a trigger instance, or failed to be evaluated on it.
struct RuleMatch {
    /// The rule.
    rule: LoadedRule,
    /// `Ok(values)` when it matched (the values its component returned, if any), or why the
    /// evaluation failed.
    outcome: Result<Option<Value>, String>,
}

pub use crate::packs::listens_to;

/// What a rule component is given for `instance`.
pub fn component_instance(instance: &TriggerInstance) -> stormhook_runtime::TriggerInstance {
    stormhook_runtime::TriggerInstance {
        id: instance.id.clone(),
        trigger: instance.trigger.clone(),
        payload: instance.payload.to_string(),
        occurrence_time: instance.occurrence_time.clone(),
    }
}
