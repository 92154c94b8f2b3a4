//! `noop_rule`: a test fixture rule that always matches, with no values.
//!
//! It never looks at the payload, so it measures the host's per-call overhead.

use stormhook_sdk::{Decision, Error, Rule, TriggerInstance};

/// The rule.
pub struct NoopRule;

impl Rule for NoopRule {
    fn evaluate(_instance: &TriggerInstance) -> Result<Decision, Error> {
        Ok(Decision::matched())
    }
}

stormhook_sdk::export_rule!(NoopRule);
