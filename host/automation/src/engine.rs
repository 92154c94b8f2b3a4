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
//! The engine reads pending instances in insertion order and remembers how far it got, so taking
//! them writes nothing; their enforcements and new status are one transaction. After a crash
//! the instances still `pending` are evaluated again, so every accepted instance is evaluated at
//! least once. (Instances left in `processing` by earlier versions go back to `pending` at
//! start.)

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use stormhook_rules::template::Renderer;
use stormhook_storage::{
    EnforcementStatus, Execution, FinishedInstance, InstanceStatus, RuleEnforcement, Store,
    TriggerInstance, ids,
};

use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::executions::{Executor, RuleRequest, datastore_context};
use crate::packs::{LoadedRule, PackManager};
use crate::stop::Stop;

/// How often the engine looks for new trigger instances when it found none.
const POLL: Duration = Duration::from_millis(50);
/// How many instances it takes at once. Claiming and finishing cost one transaction (one fsync)
/// each per batch, so a large batch keeps the engine from competing with ingest for commits.
const BATCH: u64 = 512;

/// Starts the engine; it runs until `stop` is asked for, and then ends after recording the
/// batch in hand.
///
/// # Errors
///
/// The store cannot requeue instances left in `processing`.
pub(crate) async fn start(
    store: Arc<dyn Store>,
    packs: Arc<PackManager>,
    executor: Arc<Executor>,
    mut stop: Stop,
) -> Result<JoinHandle<()>, stormhook_storage::StorageError> {
    let requeued = store.requeue_processing().await?;
    if requeued > 0 {
        tracing::warn!(
            requeued,
            "trigger instances left in processing by an earlier version are evaluated again"
        );
    }
    Ok(tokio::spawn(async move {
        let renderer = Renderer::new();
        // The number of the last instance taken. The cursor moves past a batch only once its
        // results are recorded.
        let mut cursor = 0;
        while !stop.requested() {
            let claimed = match store.pending_after(cursor, BATCH).await {
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
                    () = stop.wait() => {}
                }
                continue;
            }
            let st2kv = datastore_context(store.as_ref()).await;
            let mut kv = Map::new();
            kv.insert("st2kv".into(), st2kv.clone());
            let mut finished = Vec::with_capacity(claimed.len());
            for (seq, instance) in claimed {
                cursor = cursor.max(seq);
                let instance = match instance {
                    Ok(instance) => instance,
                    Err(unreadable) => {
                        tracing::error!(
                            trigger_instance = %unreadable.id,
                            "trigger instance cannot be read, marked processing_failed: {}",
                            unreadable.reason
                        );
                        finished.push(FinishedInstance {
                            id: unreadable.id,
                            status: InstanceStatus::ProcessingFailed,
                            enforcements: Vec::new(),
                            executions: Vec::new(),
                        });
                        continue;
                    }
                };
                let span = tracing::info_span!(
                    "evaluate",
                    trigger_instance = %instance.id,
                    trigger = %instance.trigger,
                );
                let matches = evaluate(&packs, &renderer, &kv, &instance)
                    .instrument(span.clone())
                    .await;
                let (enforcements, executions) = if matches.is_empty() {
                    span.in_scope(|| tracing::debug!("no rule matched"));
                    (Vec::new(), Vec::new())
                } else {
                    // Rendering action parameters is bounded by the templates' fuel, but a
                    // template that uses it all takes tens of milliseconds: the worker thread
                    // is handed over for that time, so requests on it are not held up.
                    off_worker(|| {
                        span.in_scope(|| enforce(&packs, &executor, &st2kv, &instance, matches))
                    })
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
                finished.push(FinishedInstance {
                    id: instance.id,
                    status: InstanceStatus::Processed,
                    enforcements,
                    executions,
                });
            }
            record(store.as_ref(), finished).await;
            executor.notify();
        }
    }))
}

/// Records a batch: its enforcements, executions and statuses in one transaction, retried as
/// [`crate::retry`] says. When a failure other than an unavailable store persists, the
/// instances are recorded one by one, and one whose own write still fails is marked
/// `processing_failed`, so one bad record cannot stop the engine.
async fn record(store: &dyn Store, finished: Vec<FinishedInstance>) {
    if write(store, &finished).await {
        return;
    }
    tracing::error!(
        instances = finished.len(),
        "recording a batch keeps failing; recording its instances one by one"
    );
    for one in finished {
        if write(store, std::slice::from_ref(&one)).await {
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
#[derive(Debug, Clone)]
pub struct RuleMatch {
    /// The rule.
    pub rule: LoadedRule,
    /// `Ok(values)` when it matched (the values its component returned, if any), or why the
    /// evaluation failed.
    pub outcome: Result<Option<Value>, String>,
}

/// Whether `rule` is evaluated on instances of `trigger`: the trigger its type and parameters
/// make, or, for a trigger type without parameters (which has one trigger), the type's ref. A
/// type with parameters (`core.st2.webhook`) is matched only through the rule's own trigger.
pub fn listens_to(rule: &LoadedRule, trigger: &str) -> bool {
    trigger == rule.trigger().reference
        || (rule.doc.trigger.parameters.is_empty() && trigger == rule.doc.trigger.trigger_type)
}

/// What a rule component is given for `instance`.
pub fn component_instance(instance: &TriggerInstance) -> stormhook_runtime::TriggerInstance {
    stormhook_runtime::TriggerInstance {
        id: instance.id.clone(),
        trigger: instance.trigger.clone(),
        payload: instance.payload.to_string(),
        occurrence_time: instance.occurrence_time.clone(),
    }
}

/// The rules a trigger instance matches (and those that failed on it), in evaluation order.
pub async fn evaluate(
    packs: &PackManager,
    renderer: &Renderer,
    kv: &Map<String, Value>,
    instance: &TriggerInstance,
) -> Vec<RuleMatch> {
    let set = packs.rules();
    let candidates: Vec<&LoadedRule> = set
        .rules
        .iter()
        .filter(|r| r.doc.enabled)
        .filter(|r| listens_to(r, &instance.trigger))
        .collect();
    let mut matches = Vec::new();
    let mut matched_standard = false;
    for backstop in [false, true] {
        if backstop && matched_standard {
            break;
        }
        for rule in candidates.iter().filter(|r| r.is_backstop() == backstop) {
            let verdict = judge(packs, renderer, kv, rule, instance).await;
            let outcome = match verdict {
                Verdict::NoMatch => continue,
                Verdict::Match(values) => {
                    matched_standard |= !backstop;
                    Ok(values)
                }
                Verdict::Failed(reason) => Err(format!(
                    "Failed to match rule \"{}\" against trigger instance \"{}\": {reason}",
                    rule.reference(),
                    instance.id
                )),
            };
            matches.push(RuleMatch {
                rule: (*rule).clone(),
                outcome,
            });
        }
    }
    matches
}

/// The enforcements and executions of a trigger instance's matches.
pub fn enforce(
    packs: &PackManager,
    executor: &Executor,
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
                let rule_json = crate::documents::rule_json(&rule, packs.root());
                match executor.for_rule(&rule, rule_json, instance, values, st2kv) {
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

async fn judge(
    packs: &PackManager,
    renderer: &Renderer,
    kv: &Map<String, Value>,
    rule: &LoadedRule,
    instance: &TriggerInstance,
) -> Verdict {
    let outcome =
        stormhook_rules::evaluate_criteria(&rule.doc.criteria, &instance.payload, kv, renderer);
    if let Some(error) = outcome.error {
        return Verdict::Failed(error);
    }
    if !outcome.matched {
        return Verdict::NoMatch;
    }
    if rule.doc.wasm.is_none() {
        return Verdict::Match(None);
    }
    let call = component_instance(instance);
    let report = packs.runtime().evaluate_rule(rule.reference(), &call).await;
    match report.result {
        Ok(decision) if decision.matched => Verdict::Match(decision.values),
        Ok(_) => Verdict::NoMatch,
        Err(err) => Verdict::Failed(err.to_string()),
    }
}
