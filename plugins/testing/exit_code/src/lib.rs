//! `exit_code`: a test fixture action that ends the guest with an exit code.
//!
//! `{"code": 3}` calls `wasi:cli/exit.exit-with-code(3)` (through the `wasip2` crate), which
//! carries the code to the host. `{"code": 3, "via": "std"}` calls `std::process::exit(3)`
//! instead: on `wasm32-wasip2` the standard library (wasi-libc) reports only success or
//! failure (`wasi:cli/exit.exit`), so the host sees code 1. Either way the host must report the
//! plugin's exit with the code it received, not a host error.

use serde::Deserialize;
use stormhook_sdk::{Action, Context, Error};

/// The parameters.
#[derive(Deserialize)]
pub struct Params {
    /// The exit code (default 3).
    #[serde(default = "three")]
    code: u8,
    /// `wasi` (default) or `std`.
    #[serde(default)]
    via: Option<String>,
}

fn three() -> u8 {
    3
}

/// The action.
pub struct ExitCode;

impl Action for ExitCode {
    type Params = Params;
    type Output = ();

    fn run(params: Params, _ctx: &Context) -> Result<(), Error> {
        println!("exiting with code {}", params.code);
        if params.via.as_deref() == Some("std") {
            std::process::exit(i32::from(params.code));
        }
        wasip2::cli::exit::exit_with_code(params.code);
        unreachable!("exit-with-code does not return");
    }
}

stormhook_sdk::export_action!(ExitCode);
