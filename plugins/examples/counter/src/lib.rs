//! `counter`: an example action that increments an integer kept in the datastore.
//!
//! Parameters `{"key": "hits", "by": 2}` (`by` defaults to 1, may be negative) add `by` to
//! the integer under `key` (missing counts as 0) with one atomic `kv::increment`, so
//! concurrent executions never lose an update, and return `{"key": "hits", "value": <sum>}`.
//! Datastore errors (for example `denied` when the pack lacks a grant, `invalid-input` when
//! the stored value is not an integer) are returned as they are.

use serde::{Deserialize, Serialize};
use stormhook_sdk::{Action, Context, Error, kv};

/// The action's parameters.
#[derive(Debug, Deserialize)]
pub struct Params {
    /// The datastore key holding the counter.
    pub key: String,
    /// How much to add.
    #[serde(default = "one")]
    pub by: i64,
}

fn one() -> i64 {
    1
}

/// The action's result.
#[derive(Debug, Serialize)]
pub struct Output {
    /// The datastore key.
    pub key: String,
    /// The counter's new value.
    pub value: i64,
}

/// The action.
pub struct Counter;

impl Action for Counter {
    type Params = Params;
    type Output = Output;

    fn run(params: Params, _ctx: &Context) -> Result<Output, Error> {
        let value = kv::increment(&params.key, params.by)?;
        Ok(Output {
            key: params.key,
            value,
        })
    }
}

stormhook_sdk::export_action!(Counter);
