//! `swap_a`: a test fixture action that returns `{"version": "a"}`.
//!
//! Hot-reload tests install `swap_a.wasm` under some plugin name, replace the file with
//! `swap_b.wasm`, and watch the result change.

use serde::Serialize;
use serde::de::IgnoredAny;
use stormhook_sdk::{Action, Context, Error};

/// The action's result.
#[derive(Debug, Serialize)]
pub struct Output {
    /// Always `"a"`.
    pub version: &'static str,
}

/// The action.
pub struct SwapA;

impl Action for SwapA {
    type Params = IgnoredAny;
    type Output = Output;

    fn run(_params: IgnoredAny, _ctx: &Context) -> Result<Output, Error> {
        Ok(Output { version: "a" })
    }
}

stormhook_sdk::export_action!(SwapA);
