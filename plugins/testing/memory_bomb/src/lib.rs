//! `memory_bomb`: a test fixture action that allocates memory until the host stops it.
//!
//! It keeps pushing 1 MiB chunks filled with non-zero bytes (so every page is touched)
//! into a vector that is never freed. When linear memory cannot grow any further (the
//! host's memory cap) the allocation fails and the guest aborts with a trap; if the host
//! has no cap, the deadline ends it instead.

use std::hint::black_box;

use serde::de::IgnoredAny;
use stormhook_sdk::{Action, Context, Error};

/// Size of one allocation.
const CHUNK: usize = 1 << 20;

/// The action.
pub struct MemoryBomb;

impl Action for MemoryBomb {
    type Params = IgnoredAny;
    type Output = ();

    fn run(_params: IgnoredAny, _ctx: &Context) -> Result<(), Error> {
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        loop {
            let fill = black_box(0xA5u8);
            chunks.push(vec![fill; CHUNK]);
            black_box(&mut chunks);
        }
    }
}

stormhook_sdk::export_action!(MemoryBomb);
