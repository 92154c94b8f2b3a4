//! `@@pack@@.@@name@@`: a Stormhook action.
//!
//! Parameters `{"name": "Ada"}` give `{"message": "Hello, Ada!"}`. Replace this with what the
//! action does; `stormhook_sdk` also has `kv` (the datastore), `config` (the pack's config),
//! `events` (start more work) and `http` (outbound requests to the hosts listed in the
//! action's `allowed_outbound_hosts`).

use serde::{Deserialize, Serialize};
use stormhook_sdk::{Action, Context, Error, log};

/// The action's parameters: the JSON object the server passes, as declared in the action
/// metadata (`action.yaml`).
#[derive(Debug, Deserialize)]
pub struct Params {
    /// Who to greet.
    pub name: String,
}

/// The action's result, returned to the server as JSON.
#[derive(Debug, Serialize)]
pub struct Output {
    /// The greeting.
    pub message: String,
}

/// The action.
pub struct Main;

impl Action for Main {
    type Params = Params;
    type Output = Output;

    fn run(params: Params, ctx: &Context) -> Result<Output, Error> {
        log::info_with("greeting", &[("execution", &ctx.execution_id)]);
        Ok(Output {
            message: greeting(&params.name),
        })
    }
}

/// The part of the work that does not call the server, so that it can be unit-tested
/// natively (`cargo test --target x86_64-unknown-linux-gnu`, or your machine's target).
fn greeting(name: &str) -> String {
    format!("Hello, {name}!")
}

stormhook_sdk::export_action!(Main);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets() {
        assert_eq!(greeting("Ada"), "Hello, Ada!");
    }
}
