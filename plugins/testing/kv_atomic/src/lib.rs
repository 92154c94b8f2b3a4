//! `kv_atomic`: a test fixture action that performs one atomic datastore operation.
//!
//! * `{"op": "increment", "key": k, "by": n}` (`by` default 1) returns
//!   `{"value": <new integer>}`;
//! * `{"op": "cas", "key": k, "expected": string | null, "new": string}` returns
//!   `{"value": <whether it stored>}`;
//! * `{"op": "cas_append", "key": k, "item": any}` appends `item` to the JSON list under `k`
//!   (missing: `[]`) with a read and compare-and-swap retry loop, and returns
//!   `{"value": <the list stored>, "attempts": <reads it took>}`;
//! * `{"op": "set_ttl", "key": k, "value": string, "ttl": seconds}` returns
//!   `{"value": <the value>}`.
//!
//! Datastore errors are returned unchanged.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use stormhook_sdk::{Action, Context, Error, kv};

/// The operation and its arguments.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Params {
    /// `kv.increment`.
    Increment {
        /// The key.
        key: String,
        /// The delta.
        #[serde(default = "one")]
        by: i64,
    },
    /// `kv.compare-and-swap`, once.
    Cas {
        /// The key.
        key: String,
        /// The value expected; `null`: the key must not exist.
        expected: Option<String>,
        /// The value to store.
        new: String,
    },
    /// A list append through a compare-and-swap retry loop.
    CasAppend {
        /// The key holding a JSON list.
        key: String,
        /// The item to append.
        item: Value,
    },
    /// `kv.set-with-ttl`.
    SetTtl {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Seconds until it expires.
        ttl: u32,
    },
}

fn one() -> i64 {
    1
}

/// The result.
#[derive(Debug, Serialize)]
pub struct Output {
    /// What the operation produced (see the crate docs).
    pub value: Value,
    /// For `cas_append`: how many reads it took (1 when no other call raced it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
}

/// The action.
pub struct KvAtomic;

impl Action for KvAtomic {
    type Params = Params;
    type Output = Output;

    fn run(params: Params, _ctx: &Context) -> Result<Output, Error> {
        let mut attempts = None;
        let value = match params {
            Params::Increment { key, by } => Value::from(kv::increment(&key, by)?),
            Params::Cas { key, expected, new } => {
                Value::Bool(kv::compare_and_swap(&key, expected.as_deref(), &new)?)
            }
            Params::CasAppend { key, item } => {
                let mut reads = 0;
                let list = kv::update_json(&key, |list: Option<Vec<Value>>| {
                    reads += 1;
                    let mut list = list.unwrap_or_default();
                    list.push(item.clone());
                    Ok(list)
                })?;
                attempts = Some(reads);
                Value::Array(list)
            }
            Params::SetTtl { key, value, ttl } => {
                kv::set_with_ttl(&key, &value, ttl)?;
                Value::String(value)
            }
        };
        Ok(Output { value, attempts })
    }
}

stormhook_sdk::export_action!(KvAtomic);
