//! Actions: do the work a rule (or a caller) asks for.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::{action as wit, types};
use crate::{Error, TriggerInstance};

/// An action with typed parameters and result. Export it with [`export_action!`].
///
/// The SDK parses the rendered parameters (a JSON object) into [`Action::Params`]; JSON that
/// does not fit becomes [`Error::InvalidInput`] carrying serde's message, and `run` is not
/// called. The returned [`Action::Output`] is serialized to JSON for the host.
///
/// Actions without parameters can use [`serde::de::IgnoredAny`] as `Params`; actions that
/// want the raw JSON text implement [`RawAction`] instead.
///
/// [`export_action!`]: crate::export_action
pub trait Action {
    /// The parameters, deserialized from the JSON object the host passes.
    type Params: DeserializeOwned;
    /// The result, serialized to JSON for the host.
    type Output: Serialize;

    /// Runs the action once.
    fn run(params: Self::Params, ctx: &Context) -> Result<Self::Output, Error>;
}

/// An action that takes and returns JSON text without the SDK touching it. Export it with
/// [`export_raw_action!`].
///
/// The host passes the rendered parameters as a JSON object; the returned text must be
/// valid JSON.
///
/// [`export_raw_action!`]: crate::export_raw_action
pub trait RawAction {
    /// Runs the action once with the parameters as JSON text; returns JSON text.
    fn run(params: String, ctx: &Context) -> Result<String, Error>;
}

/// Where an action call comes from.
#[derive(Debug, Clone)]
pub struct Context {
    /// The execution id.
    pub execution_id: String,
    /// The action reference, `<pack>.<name>`.
    pub action_ref: String,
    /// The rule reference (`<pack>.<name>`) when a rule caused this execution.
    pub rule_ref: Option<String>,
    /// The trigger instance that caused this execution, if any.
    pub trigger_instance: Option<TriggerInstance>,
    /// The user the execution runs as (StackStorm's `context.user`), for example `stanley`.
    pub user: String,
    /// The trace tag of the trace this execution belongs to, if it has one.
    pub trace_tag: Option<String>,
    /// Milliseconds left before this call's deadline when `run` was called. Give outbound
    /// calls less than this: the host interrupts the call at its deadline.
    pub deadline_ms: u64,
    /// The execution that requested this one through [`events::request_execution`], if any.
    ///
    /// [`events::request_execution`]: crate::events::request_execution
    pub parent_execution_id: Option<String>,
    /// How many plugin-started links ([`events::emit`], [`events::request_execution`]) lead
    /// to this execution: 0 for one started by a webhook, a rule or the API. The host refuses
    /// links past its limit.
    ///
    /// [`events::emit`]: crate::events::emit
    /// [`events::request_execution`]: crate::events::request_execution
    pub depth: u32,
}

impl From<types::ExecutionContext> for Context {
    fn from(context: types::ExecutionContext) -> Self {
        Self {
            execution_id: context.execution_id,
            action_ref: context.action_ref,
            rule_ref: context.rule_ref,
            trigger_instance: context.trigger_instance.map(TriggerInstance::from),
            user: context.user,
            trace_tag: context.trace_tag,
            deadline_ms: context.deadline_ms,
            parent_execution_id: context.parent_execution_id,
            depth: context.depth,
        }
    }
}

/// The typed adapter behind [`export_action!`](crate::export_action).
pub(crate) fn run<A: Action>(params: &str, ctx: &Context) -> Result<String, Error> {
    let params: A::Params = serde_json::from_str(params)
        .map_err(|error| Error::invalid_input(format!("invalid parameters: {error}")))?;
    let output = A::run(params, ctx)?;
    serde_json::to_string(&output)
        .map_err(|error| Error::internal(format!("action result does not serialize: {error}")))
}

/// Entry points used by the export macros, re-exported as `crate::__private`.
pub(crate) mod __private {
    use super::*;

    /// `run` for an [`Action`]: parse, run, serialize.
    pub fn run_action<A: Action>(
        params: wit::Json,
        context: wit::ExecutionContext,
    ) -> Result<wit::Json, wit::Error> {
        Ok(run::<A>(&params, &context.into())?)
    }

    /// `run` for a [`RawAction`]: JSON text passes through untouched.
    pub fn run_raw_action<A: RawAction>(
        params: wit::Json,
        context: wit::ExecutionContext,
    ) -> Result<wit::Json, wit::Error> {
        Ok(A::run(params, &context.into())?)
    }
}

/// Exports a type implementing [`Action`] as the component's `run` function.
///
/// Use it once, at the top level of a plugin crate (a `cdylib` built for `wasm32-wasip2`).
///
/// ```ignore
/// struct Greet;
/// impl stormhook_sdk::Action for Greet { /* ... */ }
/// stormhook_sdk::export_action!(Greet);
/// ```
#[macro_export]
macro_rules! export_action {
    ($action:ty) => {
        $crate::__export_action_world! {
            fn run(parameters, context) {
                $crate::__private::run_action::<$action>(parameters, context)
            }
        }
    };
}

/// Exports a type implementing [`RawAction`] as the component's `run` function.
///
/// ```ignore
/// struct Echo;
/// impl stormhook_sdk::RawAction for Echo { /* ... */ }
/// stormhook_sdk::export_raw_action!(Echo);
/// ```
#[macro_export]
macro_rules! export_raw_action {
    ($action:ty) => {
        $crate::__export_action_world! {
            fn run(parameters, context) {
                $crate::__private::run_raw_action::<$action>(parameters, context)
            }
        }
    };
}

/// Implements the generated `Guest` trait on a hidden type and exports it. Not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_action_world {
    (fn run($parameters:ident, $context:ident) $body:block) => {
        const _: () = {
            $crate::__require_wasm!();

            struct StormhookAction;

            impl $crate::bindings::action::Guest for StormhookAction {
                fn run(
                    $parameters: $crate::bindings::action::Json,
                    $context: $crate::bindings::action::ExecutionContext,
                ) -> ::core::result::Result<
                    $crate::bindings::action::Json,
                    $crate::bindings::action::Error,
                > $body
            }

            $crate::bindings::action::export!(
                StormhookAction with_types_in $crate::bindings::action
            );
        };
    };
}
