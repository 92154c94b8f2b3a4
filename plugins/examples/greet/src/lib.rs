//! `greet`: an example action that greets someone by name.
//!
//! Parameters `{"name": "Ada", "greeting": "Hi"}` (`greeting` defaults to `Hello`) give
//! `{"message": "Hi, Ada!"}`; one info line is logged per call.

use serde::{Deserialize, Serialize};
use stormhook_sdk::{Action, Context, Error, log};

/// The action's parameters.
#[derive(Debug, Deserialize)]
pub struct Params {
    /// Who to greet.
    pub name: String,
    /// The greeting word.
    #[serde(default = "default_greeting")]
    pub greeting: String,
}

fn default_greeting() -> String {
    "Hello".to_owned()
}

/// The action's result.
#[derive(Debug, Serialize)]
pub struct Output {
    /// `"<greeting>, <name>!"`.
    pub message: String,
}

/// The action.
pub struct Greet;

impl Action for Greet {
    type Params = Params;
    type Output = Output;

    fn run(params: Params, ctx: &Context) -> Result<Output, Error> {
        let message = format!("{}, {}!", params.greeting, params.name);
        log::info_with(
            &message,
            &[
                ("execution_id", &ctx.execution_id),
                ("action", &ctx.action_ref),
            ],
        );
        Ok(Output { message })
    }
}

stormhook_sdk::export_action!(Greet);
