//! `loop_forever`: a test fixture action that spins forever.
//!
//! The loop updates a counter through [`black_box`], so the optimizer cannot prove it
//! side-effect free and remove it. Only the host's deadline (epoch interruption or fuel)
//! ends the call, with a trap.

use std::hint::black_box;

use serde::de::IgnoredAny;
use stormhook_sdk::{Action, Context, Error};

/// The action.
pub struct LoopForever;

impl Action for LoopForever {
    type Params = IgnoredAny;
    type Output = ();

    fn run(_params: IgnoredAny, _ctx: &Context) -> Result<(), Error> {
        let mut counter = 0u64;
        loop {
            counter = black_box(counter.wrapping_add(1));
        }
    }
}

stormhook_sdk::export_action!(LoopForever);
