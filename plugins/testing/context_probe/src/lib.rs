//! `context_probe`: a test fixture action that returns its whole execution context.
//!
//! Takes any parameters (ignored) and returns `{"execution_id", "action_ref", "rule_ref",
//! "trigger_instance_id", "trigger", "user", "trace_tag", "deadline_ms",
//! "parent_execution_id", "depth"}`.

use serde::Serialize;
use serde::de::IgnoredAny;
use stormhook_sdk::{Action, Context, Error};

/// The result: the context, flattened.
#[derive(Debug, Serialize)]
pub struct Output {
    /// The execution id.
    pub execution_id: String,
    /// `<pack>.<name>`.
    pub action_ref: String,
    /// The rule that caused the execution, if any.
    pub rule_ref: Option<String>,
    /// The trigger instance's id, if any.
    pub trigger_instance_id: Option<String>,
    /// The trigger instance's trigger, if any.
    pub trigger: Option<String>,
    /// The user.
    pub user: String,
    /// The trace tag, if any.
    pub trace_tag: Option<String>,
    /// Milliseconds left before the deadline when `run` was called.
    pub deadline_ms: u64,
    /// The execution that requested this one, if any.
    pub parent_execution_id: Option<String>,
    /// The chain depth.
    pub depth: u32,
}

/// The action.
pub struct ContextProbe;

impl Action for ContextProbe {
    type Params = IgnoredAny;
    type Output = Output;

    fn run(_params: IgnoredAny, ctx: &Context) -> Result<Output, Error> {
        let ctx = ctx.clone();
        Ok(Output {
            execution_id: ctx.execution_id,
            action_ref: ctx.action_ref,
            rule_ref: ctx.rule_ref,
            trigger_instance_id: ctx.trigger_instance.as_ref().map(|t| t.id.clone()),
            trigger: ctx.trigger_instance.map(|t| t.trigger),
            user: ctx.user,
            trace_tag: ctx.trace_tag,
            deadline_ms: ctx.deadline_ms,
            parent_execution_id: ctx.parent_execution_id,
            depth: ctx.depth,
        })
    }
}

stormhook_sdk::export_action!(ContextProbe);
