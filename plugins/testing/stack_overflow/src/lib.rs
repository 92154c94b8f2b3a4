//! `stack_overflow`: a test fixture action that recurses without bound.
//!
//! Each frame keeps a 256-byte local array that is read after the recursive call returns,
//! so the recursion is not a tail call and cannot become a loop; [`black_box`] hides the
//! values from the optimizer. The call traps when either the wasm call stack (the host's
//! `max_wasm_stack`) or the guest's 1 MiB shadow stack in linear memory runs out.

use std::hint::black_box;

use stormhook_sdk::{Action, Context, Error};

/// The action.
pub struct StackOverflow;

impl Action for StackOverflow {
    type Params = Params;
    type Output = u64;

    fn run(params: Params, _ctx: &Context) -> Result<u64, Error> {
        if params.small_frames {
            Ok(recurse_small(black_box(0)))
        } else {
            Ok(recurse(black_box(0)))
        }
    }
}

/// Parameters.
#[derive(serde::Deserialize)]
pub struct Params {
    /// Recurse with frames that use no linear memory.
    #[serde(default)]
    small_frames: bool,
}

#[inline(never)]
fn recurse_small(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return 0;
    }
    recurse_small(black_box(depth + 1)).wrapping_mul(black_box(3))
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    // Never true; it only keeps the recursion from being unconditional.
    if black_box(depth) == u64::MAX {
        return 0;
    }
    let mut frame = [0u8; 256];
    frame[(depth % 256) as usize] = depth as u8;
    let frame = black_box(frame);
    let below = recurse(black_box(depth + 1));
    below.wrapping_add(u64::from(frame[(below % 256) as usize]))
}

stormhook_sdk::export_action!(StackOverflow);
