//! `v0_1_0_action`: a test fixture action built against the frozen `stormhook:plugin@0.1.0`
//! package (`wit/frozen/0.1.0`), with `wit-bindgen` directly and without the SDK, which
//! targets the current package. It is what a component released before 0.2.0 looks like, so
//! the host's tests can prove such components still load and run.
//!
//! `run` returns `{"parameters": <the parameters>, "execution_id", "action_ref", "kv":
//! <value read back or null>}`, logs `v0.1.0 action ran` at info, and when the parameters
//! hold a string `key`, stores `value` (a string, default `"v0.1.0"`) under it with `kv.set`
//! and reads it back with `kv.get`.

// wit-bindgen's generated code uses `unsafe` for the canonical ABI.
#![allow(unsafe_code)]

#[allow(missing_docs, unreachable_pub, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        world: "action",
        // Relative to this crate's Cargo.toml: plugins/testing/v0_1_0_action -> the root.
        path: "../../../wit/frozen/0.1.0",
    });
}

use bindings::stormhook::plugin::{kv, log};
use bindings::{Error, ExecutionContext, Guest, Json};
use serde_json::{Value, json};

struct V010Action;

impl Guest for V010Action {
    fn run(parameters: Json, context: ExecutionContext) -> Result<Json, Error> {
        let parameters: Value = serde_json::from_str(&parameters)
            .map_err(|error| Error::InvalidInput(format!("invalid parameters: {error}")))?;
        log::log(
            log::Level::Info,
            "v0.1.0 action ran",
            &[("execution".to_owned(), context.execution_id.clone())],
        );
        let stored = match parameters.get("key").and_then(Value::as_str) {
            Some(key) => {
                let value = parameters
                    .get("value")
                    .and_then(Value::as_str)
                    .unwrap_or("v0.1.0");
                kv::set(key, value)?;
                kv::get(key)?
            }
            None => None,
        };
        Ok(json!({
            "parameters": parameters,
            "execution_id": context.execution_id,
            "action_ref": context.action_ref,
            "kv": stored,
        })
        .to_string())
    }
}

bindings::export!(V010Action with_types_in bindings);
