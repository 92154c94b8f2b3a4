//! `branch_filter`: an example rule that matches pushes to `main` or `master`.
//!
//! The payload is a webhook payload `{"headers": ..., "headers_lower": ..., "body": ...}`
//! whose body is a GitHub-style push event. The rule matches when `body.ref` is
//! `refs/heads/main` or `refs/heads/master` and hands the templates
//! `{"branch": "<name>", "pusher": body.pusher.name or null}`. A payload without a string
//! `body.ref` (another event, a tag push, not an object) does not match; only text that is
//! not JSON at all is an error (`invalid-input`).

use serde_json::{Value, json};
use stormhook_sdk::{Decision, Error, Rule, TriggerInstance};

/// Branches this rule accepts.
const BRANCHES: [&str; 2] = ["main", "master"];

/// The rule.
pub struct BranchFilter;

impl Rule for BranchFilter {
    fn evaluate(instance: &TriggerInstance) -> Result<Decision, Error> {
        Ok(decide(instance.payload()?))
    }
}

/// The decision for one parsed webhook payload.
fn decide(payload: &Value) -> Decision {
    let branch = payload
        .pointer("/body/ref")
        .and_then(Value::as_str)
        .and_then(|reference| reference.strip_prefix("refs/heads/"));
    match branch {
        Some(branch) if BRANCHES.contains(&branch) => {
            let pusher = payload
                .pointer("/body/pusher/name")
                .cloned()
                .unwrap_or(Value::Null);
            Decision::matched_with(json!({ "branch": branch, "pusher": pusher }))
        }
        _ => Decision::no_match(),
    }
}

stormhook_sdk::export_rule!(BranchFilter);

#[cfg(test)]
mod tests {
    use super::*;

    fn push(reference: &str) -> Value {
        json!({
            "headers": {"X-GitHub-Event": "push"},
            "headers_lower": {"x-github-event": "push"},
            "body": {"ref": reference, "pusher": {"name": "ada"}},
        })
    }

    #[test]
    fn matches_main_and_master() {
        for branch in ["main", "master"] {
            let decision = decide(&push(&format!("refs/heads/{branch}")));
            assert!(decision.is_match());
            let values: Value = serde_json::from_str(decision.values_json().unwrap()).unwrap();
            assert_eq!(values, json!({"branch": branch, "pusher": "ada"}));
        }
    }

    #[test]
    fn ignores_other_refs() {
        for reference in [
            "refs/heads/dev",
            "refs/tags/main",
            "main",
            "refs/heads/main2",
        ] {
            assert!(!decide(&push(reference)).is_match(), "{reference}");
        }
    }

    #[test]
    fn missing_ref_is_no_match() {
        assert!(!decide(&json!({"body": {}})).is_match());
        assert!(!decide(&json!({"body": {"ref": 3}})).is_match());
        assert!(!decide(&json!([1, 2])).is_match());
    }

    #[test]
    fn missing_pusher_is_null() {
        let decision = decide(&json!({"body": {"ref": "refs/heads/main"}}));
        assert_eq!(
            decision.values_json(),
            Some(r#"{"branch":"main","pusher":null}"#)
        );
    }

    #[test]
    fn bad_json_is_invalid_input() {
        let instance = TriggerInstance::new("0", "core.st2.webhook", "not json", "now");
        assert!(matches!(
            BranchFilter::evaluate(&instance),
            Err(Error::InvalidInput(_))
        ));
    }
}
