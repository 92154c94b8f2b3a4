//! The StackStorm document shapes the API shows and the executor records: a rule, a trigger
//! type. Built here, once, so the executor and the HTTP layer show the same document.

use serde_json::{Value, json};
use stormhook_storage::TriggerType;

use crate::packs::{LoadedRule, RuleSource};

/// A rule as the API shows it.
pub fn rule_json(rule: &LoadedRule, packs_root: &std::path::Path) -> Value {
    let doc = &rule.doc;
    let parameters = Value::Object(doc.trigger.parameters.clone());
    let trigger = rule.trigger();
    let (user, metadata_file) = match &rule.source {
        RuleSource::Api { created_by, .. } => (created_by.clone(), String::new()),
        RuleSource::Pack { file } => (
            "stanley".to_owned(),
            file.strip_prefix(packs_root.join(&doc.pack))
                .unwrap_or(file)
                .display()
                .to_string(),
        ),
    };
    let rule_type = match &doc.rule_type {
        Some(Value::Object(t)) => {
            json!({"ref": t.get("ref").cloned().unwrap_or(json!("standard")), "parameters": t.get("parameters").cloned().unwrap_or(json!({}))})
        }
        Some(Value::String(r)) => json!({"ref": r, "parameters": {}}),
        _ => json!({"ref": "standard", "parameters": {}}),
    };
    let mut out = json!({
        "id": rule.id(),
        "ref": rule.reference(),
        "uid": rule.uid(),
        "name": doc.name,
        "pack": doc.pack,
        "enabled": doc.enabled,
        "type": rule_type,
        "trigger": {"type": doc.trigger.trigger_type, "parameters": parameters, "ref": trigger.reference},
        "criteria": doc.criteria,
        "action": {"ref": doc.action.reference, "parameters": doc.action.parameters},
        "context": {"user": user},
        "tags": doc.tags,
        "metadata_file": metadata_file,
    });
    if !doc.description.is_empty() {
        out["description"] = json!(doc.description);
    }
    out
}

/// A trigger type as the API shows it.
pub fn trigger_type_json(t: &TriggerType) -> Value {
    let mut v = json!({
        "id": t.id,
        "ref": t.reference,
        "uid": format!("trigger_type:{}:{}", t.pack, t.name),
        "name": t.name,
        "pack": t.pack,
        "payload_schema": t.payload_schema,
        "parameters_schema": t.parameters_schema,
        "tags": t.tags,
    });
    if let Some(d) = &t.description {
        v["description"] = json!(d);
    }
    v
}

/// Plugin-started links leading to an execution, from its context (`context.depth`; 0 when
/// absent).
pub fn depth_of(context: &Value) -> u32 {
    context["depth"]
        .as_u64()
        .map_or(0, |d| u32::try_from(d).unwrap_or(u32::MAX))
}
