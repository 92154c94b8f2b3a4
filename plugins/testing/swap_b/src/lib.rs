//! `swap_b`: a test fixture action that returns `{"version": "b"}`.
//!
//! Hot-reload tests install `swap_a.wasm` under some plugin name, replace the file with
//! `swap_b.wasm`, and watch the result change.

use serde::Serialize;
use serde::de::IgnoredAny;
use stormhook_sdk::{Action, Context, Error};

/// The action's result.
#[derive(Debug, Serialize)]
pub struct Output {
    /// Always `"b"`.
    pub version: &'static str,
}

/// The action.
pub struct SwapB;

impl Action for SwapB {
    type Params = IgnoredAny;
    type Output = Output;

    fn run(_params: IgnoredAny, _ctx: &Context) -> Result<Output, Error> {
        Ok(Output { version: "b" })
    }
}

stormhook_sdk::export_action!(SwapB);
