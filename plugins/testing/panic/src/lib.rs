//! `panic`: a test fixture action that panics on every call.
//!
//! The panic message (`fixture panic: ...`) goes to stderr through the standard panic hook,
//! then the guest aborts: the host sees a trap, not an `error`.

use serde::de::IgnoredAny;
use stormhook_sdk::{Action, Context, Error};

/// The action.
pub struct Panic;

impl Action for Panic {
    type Params = IgnoredAny;
    type Output = ();

    fn run(_params: IgnoredAny, ctx: &Context) -> Result<(), Error> {
        panic!("fixture panic: execution {} asked for it", ctx.execution_id);
    }
}

stormhook_sdk::export_action!(Panic);
