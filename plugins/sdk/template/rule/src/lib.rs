//! `@@pack@@.@@name@@`: a Stormhook rule component.
//!
//! It runs after the rule file's criteria pass, and matches a webhook whose JSON body has
//! `"status": "failed"`, handing the action-parameter templates `{{ rule.service }}`. Replace
//! this with your own decision; keep it cheap (rules run under a 100 ms deadline by default).

use serde_json::{Value, json};
use stormhook_sdk::{Decision, Error, Rule, TriggerInstance};

/// The rule.
pub struct Main;

impl Rule for Main {
    fn evaluate(instance: &TriggerInstance) -> Result<Decision, Error> {
        Ok(decide(instance.payload()?))
    }
}

/// The decision for one parsed payload (`{"headers": ..., "headers_lower": ..., "body": ...}`
/// for a webhook). It does not call the server, so it can be unit-tested natively
/// (`cargo test --target x86_64-unknown-linux-gnu`, or your machine's target).
fn decide(payload: &Value) -> Decision {
    match payload.pointer("/body/status").and_then(Value::as_str) {
        Some("failed") => {
            let service = payload.pointer("/body/service").cloned();
            Decision::matched_with(json!({ "service": service.unwrap_or(Value::Null) }))
        }
        _ => Decision::no_match(),
    }
}

stormhook_sdk::export_rule!(Main);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_failures_only() {
        let failed = json!({"body": {"status": "failed", "service": "billing"}});
        assert!(decide(&failed).is_match());
        assert!(!decide(&json!({"body": {"status": "ok"}})).is_match());
    }
}
