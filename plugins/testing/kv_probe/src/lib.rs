//! `kv_probe`: a test fixture action that performs one datastore operation.
//!
//! Parameters `{"op": "get" | "set" | "delete", "key": "k", "value": "v"}` (`value` only for
//! `set`, where it is required) return `{"result": ...}`: the stored string or `null` for
//! `get`, whether the key existed for `delete`, `null` for `set`. Datastore errors (for
//! example `denied` outside the pack's grant) are returned as they are.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use stormhook_sdk::{Action, Context, Error, kv};

/// A datastore operation.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// `kv.get`.
    Get,
    /// `kv.set`.
    Set,
    /// `kv.delete`.
    Delete,
}

/// The action's parameters.
#[derive(Debug, Deserialize)]
pub struct Params {
    /// The operation.
    pub op: Op,
    /// The key.
    pub key: String,
    /// The value to store (`set` only).
    pub value: Option<String>,
}

/// The action's result.
#[derive(Debug, Serialize)]
pub struct Output {
    /// What the operation returned.
    pub result: Value,
}

/// The action.
pub struct KvProbe;

impl Action for KvProbe {
    type Params = Params;
    type Output = Output;

    fn run(params: Params, _ctx: &Context) -> Result<Output, Error> {
        let result = match params.op {
            Op::Get => kv::get(&params.key)?.map_or(Value::Null, Value::String),
            Op::Set => {
                let value = params
                    .value
                    .ok_or_else(|| Error::invalid_input("`set` needs a string `value`"))?;
                kv::set(&params.key, &value)?;
                Value::Null
            }
            Op::Delete => Value::Bool(kv::delete(&params.key)?),
        };
        Ok(Output { result })
    }
}

stormhook_sdk::export_action!(KvProbe);
