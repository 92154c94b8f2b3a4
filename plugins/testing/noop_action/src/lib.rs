//! `noop_action`: a test fixture action that returns its parameters unchanged.
//!
//! It is a [`RawAction`]: the parameter text is returned as is, without parsing, so it
//! measures the host's per-call overhead.

use stormhook_sdk::{Context, Error, RawAction};

/// The action.
pub struct NoopAction;

impl RawAction for NoopAction {
    fn run(params: String, _ctx: &Context) -> Result<String, Error> {
        Ok(params)
    }
}

stormhook_sdk::export_raw_action!(NoopAction);
