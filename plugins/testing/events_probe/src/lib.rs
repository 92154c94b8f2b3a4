//! `events_probe`: a test fixture action that emits a trigger instance or requests an
//! execution through the `events` import.
//!
//! * `{"emit": {"trigger": "pack.name", "payload": {...}}}` emits a trigger instance;
//! * `{"request": {"action": "pack.name", "parameters": {...}}}` requests an execution;
//! * `{"chain": true}` requests an execution of this same action with the same parameters, so
//!   each execution starts the next until the host refuses a link (the depth limit).
//!
//! Returns `{"trigger_instance_id", "execution_id", "depth", "parent_execution_id",
//! "error"}`. A refusal is returned as the action's error, unchanged (kind and message),
//! unless `"catch": true`, which returns it as `"error": {"kind", "message"}` instead.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use stormhook_sdk::{Action, Context, Error, events, log};

/// The parameters.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Params {
    /// A trigger instance to emit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emit: Option<Emit>,
    /// An execution to request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestExecution>,
    /// Request an execution of this action with these same parameters.
    #[serde(default)]
    pub chain: bool,
    /// Return a refusal in the result instead of failing.
    #[serde(default)]
    pub catch: bool,
}

/// `events.emit`'s arguments.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Emit {
    /// The trigger reference.
    pub trigger: String,
    /// The payload (a JSON object; anything else is refused before the host is asked).
    #[serde(default = "empty_object")]
    pub payload: Value,
}

/// `events.request-execution`'s arguments.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RequestExecution {
    /// The action reference.
    pub action: String,
    /// The parameters (a JSON object).
    #[serde(default = "empty_object")]
    pub parameters: Value,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

/// The result.
#[derive(Debug, Default, Serialize)]
pub struct Output {
    /// The emitted trigger instance's id.
    pub trigger_instance_id: Option<String>,
    /// The requested execution's id (from `request` or `chain`).
    pub execution_id: Option<String>,
    /// This execution's depth.
    pub depth: u32,
    /// This execution's parent.
    pub parent_execution_id: Option<String>,
    /// The refusal, with `catch`.
    pub error: Option<Refusal>,
}

/// An error returned in the result.
#[derive(Debug, Serialize)]
pub struct Refusal {
    /// The WIT case: `invalid-input`, `denied`, `upstream` or `internal`.
    pub kind: &'static str,
    /// The message.
    pub message: String,
}

/// The action.
pub struct EventsProbe;

impl Action for EventsProbe {
    type Params = Params;
    type Output = Output;

    fn run(params: Params, ctx: &Context) -> Result<Output, Error> {
        let mut output = Output {
            depth: ctx.depth,
            parent_execution_id: ctx.parent_execution_id.clone(),
            ..Output::default()
        };
        if let Err(error) = act(&params, ctx, &mut output) {
            if !params.catch {
                return Err(error);
            }
            log::info_with("events_probe refused", &[("error", &error.to_string())]);
            output.error = Some(Refusal {
                kind: error.kind(),
                message: error.message().to_owned(),
            });
        }
        Ok(output)
    }
}

fn act(params: &Params, ctx: &Context, output: &mut Output) -> Result<(), Error> {
    if let Some(emit) = &params.emit {
        output.trigger_instance_id = Some(events::emit(&emit.trigger, &emit.payload)?);
    }
    if let Some(request) = &params.request {
        output.execution_id = Some(events::request_execution(
            &request.action,
            &request.parameters,
        )?);
    }
    if params.chain {
        output.execution_id = Some(events::request_execution(&ctx.action_ref, params)?);
    }
    Ok(())
}

stormhook_sdk::export_action!(EventsProbe);
