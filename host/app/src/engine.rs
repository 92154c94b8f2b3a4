//! The rules engine: takes accepted trigger instances from the store (never from the request
//! path), evaluates the enabled rules on their trigger, and records one enforcement per matched
//! rule and per failed evaluation. The instance moves `pending -> processing -> processed`.
//!
//! For each instance, standard rules are evaluated first: their declarative criteria, then their
//! rule component if they have one. `backstop` rules run only when no standard rule matched. An
//! error (a bad regex, a key that does not parse, a trapping component) fails that rule's
//! enforcement with the reason and never stops the engine.
//!
//! Executions arrive with issue 5. Until then a matched rule's enforcement has no
//! `execution_id`.
//!
//! Instances left in `processing` by a crash go back to `pending` at start, so every accepted
//! instance is evaluated at least once.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use stormhook_rules::template::Renderer;
use stormhook_storage::{RuleEnforcement, Store, TriggerInstance, ids};

use crate::packs::{LoadedRule, PackManager};

/// How often the engine looks for new trigger instances when it found none.
const POLL: Duration = Duration::from_millis(50);
/// How many instances it takes at once. Claiming and finishing cost one transaction (one fsync)
/// each per batch, so a large batch keeps the engine from competing with ingest for commits.
const BATCH: u64 = 512;

/// Starts the engine; it runs until the process ends.
///
/// # Errors
///
/// The store cannot requeue instances left in `processing`.
pub async fn start(
    store: Arc<dyn Store>,
    packs: Arc<PackManager>,
) -> Result<(), stormhook_storage::StorageError> {
    let requeued = store.requeue_processing().await?;
    if requeued > 0 {
        tracing::warn!(
            requeued,
            "trigger instances left in processing by a stop are evaluated again"
        );
    }
    tokio::spawn(async move {
        let renderer = Renderer::new();
        loop {
            let claimed = match store.claim_pending(BATCH).await {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::error!("rules engine cannot read pending trigger instances: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if claimed.is_empty() {
                tokio::time::sleep(POLL).await;
                continue;
            }
            let kv = datastore_context(store.as_ref()).await;
            let mut finished = Vec::with_capacity(claimed.len());
            for instance in claimed {
                let enforcements = evaluate(&packs, &renderer, &kv, &instance).await;
                finished.push((instance.id, "processed".to_owned(), enforcements));
            }
            if let Err(e) = store.finish_trigger_instances(&finished).await {
                // Left in `processing`: evaluated again after the next start.
                tracing::error!(
                    instances = finished.len(),
                    "recording rule enforcements failed: {e}"
                );
            }
        }
    });
    Ok(())
}

/// `st2kv.system` for templates: every datastore value by name.
async fn datastore_context(store: &dyn Store) -> Map<String, Value> {
    let values: Map<String, Value> = store
        .kv_all()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let mut context = Map::new();
    context.insert("st2kv".into(), json!({ "system": values }));
    context
}

enum Verdict {
    Match,
    NoMatch,
    Failed(String),
}

/// The enforcements a trigger instance causes.
pub async fn evaluate(
    packs: &PackManager,
    renderer: &Renderer,
    kv: &Map<String, Value>,
    instance: &TriggerInstance,
) -> Vec<RuleEnforcement> {
    let set = packs.rules();
    let candidates: Vec<&LoadedRule> = set
        .rules
        .iter()
        .filter(|r| r.doc.enabled)
        .filter(|r| {
            instance.trigger == r.trigger().reference
                || instance.trigger == r.doc.trigger.trigger_type
        })
        .collect();
    let mut enforcements = Vec::new();
    let mut matched_standard = false;
    for backstop in [false, true] {
        if backstop && matched_standard {
            break;
        }
        for rule in candidates.iter().filter(|r| r.is_backstop() == backstop) {
            let verdict = judge(packs, renderer, kv, rule, instance).await;
            let (status, failure_reason) = match verdict {
                Verdict::NoMatch => continue,
                Verdict::Match => {
                    matched_standard |= !backstop;
                    ("succeeded", None)
                }
                Verdict::Failed(reason) => (
                    "failed",
                    Some(format!(
                        "Failed to match rule \"{}\" against trigger instance \"{}\": {reason}",
                        rule.doc.reference(),
                        instance.id
                    )),
                ),
            };
            enforcements.push(RuleEnforcement {
                id: ids::object_id(),
                trigger_instance_id: instance.id.clone(),
                execution_id: None,
                failure_reason,
                rule_ref: rule.doc.reference(),
                rule_id: rule.id(),
                rule_uid: rule.uid(),
                enforced_at: ids::now(),
                status: status.into(),
            });
        }
    }
    enforcements
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
        return Verdict::Match;
    }
    let call = stormhook_runtime::TriggerInstance {
        id: instance.id.clone(),
        trigger: instance.trigger.clone(),
        payload: instance.payload.to_string(),
        occurrence_time: instance.occurrence_time.clone(),
    };
    let report = packs
        .runtime()
        .evaluate_rule(&rule.doc.reference(), &call)
        .await;
    match report.result {
        Ok(decision) if decision.matched => Verdict::Match,
        Ok(_) => Verdict::NoMatch,
        Err(err) => Verdict::Failed(err.to_string()),
    }
}
