//! The runners that need no process or plugin: `core.noop` (runner `noop`) and `core.echo`
//! (declared `local-shell-cmd`, as in StackStorm, but answered here without a shell).

use serde_json::{Map, Value, json};
use stormhook_storage::ExecutionStatus;

use super::Outcome;

/// `core.echo`: the message and a newline on stdout.
pub(super) fn echo(params: &Map<String, Value>) -> Outcome {
    let message = params.get("message").and_then(Value::as_str).unwrap_or("");
    let mut stdout = message.as_bytes().to_vec();
    stdout.push(b'\n');
    Outcome {
        status: ExecutionStatus::Succeeded,
        result: json!({"failed": false, "succeeded": true, "return_code": 0,
                       "stdout": super::local::decode(&stdout), "stderr": ""}),
    }
}

/// `core.noop`: succeeds, does nothing.
pub(super) fn noop() -> Outcome {
    Outcome {
        status: ExecutionStatus::Succeeded,
        result: json!({"failed": false, "succeeded": true, "return_code": 0}),
    }
}
