//! `counter`: an example action that increments an integer kept in the datastore.
//!
//! Parameters `{"key": "hits", "by": 2}` (`by` defaults to 1, may be negative) read the
//! value under `key` (missing counts as 0), add `by`, store the sum (decimal text) and
//! return `{"key": "hits", "value": <sum>}`. Datastore errors (for example `denied` when the
//! pack lacks a grant) are returned as they are.

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
        let current = match kv::get(&params.key)? {
            None => 0,
            Some(text) => text.trim().parse::<i64>().map_err(|error| {
                Error::internal(format!(
                    "datastore value under `{}` is not an integer ({error}): {text:?}",
                    params.key
                ))
            })?,
        };
        let value = current.checked_add(params.by).ok_or_else(|| {
            Error::invalid_input(format!(
                "{current} + {} overflows a 64-bit integer",
                params.by
            ))
        })?;
        kv::set(&params.key, &value.to_string())?;
        Ok(Output {
            key: params.key,
            value,
        })
    }
}

stormhook_sdk::export_action!(Counter);
