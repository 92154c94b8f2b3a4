//! `loop_rule`: a test fixture rule that spins forever.
//!
//! The loop updates a counter through [`black_box`], so the optimizer cannot remove it.
//! Only the host's rule deadline (100 ms by default) ends the call, with a trap.

use std::hint::black_box;

use stormhook_sdk::{Decision, Error, Rule, TriggerInstance};

/// The rule.
pub struct LoopRule;

impl Rule for LoopRule {
    fn evaluate(_instance: &TriggerInstance) -> Result<Decision, Error> {
        let mut counter = 0u64;
        loop {
            counter = black_box(counter.wrapping_add(1));
        }
    }
}

stormhook_sdk::export_rule!(LoopRule);
