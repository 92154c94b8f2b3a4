//! The `wasm` runner: a pack action's component, called through the plugin runtime, its
//! value, logs and captured output shaped into the execution's result.

use serde_json::{Map, Value, json};
use stormhook_runtime::{ActionContext, Runtime};
use stormhook_storage::{Execution, ExecutionStatus};

use super::Outcome;

/// Runs action `reference` for `execution` with `params`.
pub(super) async fn run(
    runtime: &Runtime,
    reference: &str,
    execution: &Execution,
    params: &Map<String, Value>,
) -> Outcome {
    let trigger_instance =
        execution
            .document
            .get("trigger_instance")
            .map(|ti| stormhook_runtime::TriggerInstance {
                id: ti["id"].as_str().unwrap_or_default().to_owned(),
                trigger: ti["trigger"].as_str().unwrap_or_default().to_owned(),
                payload: ti["payload"].to_string(),
                occurrence_time: ti["occurrence_time"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            });
    let ctx = &execution.document["context"];
    let context = ActionContext {
        execution_id: execution.id.clone(),
        rule_ref: execution.rule_ref.clone(),
        trigger_instance,
        user: execution.user.clone().unwrap_or_default(),
        trace_tag: ctx["trace_context"]["trace_tag"]
            .as_str()
            .map(str::to_owned),
        parent_execution_id: ctx["parent"]["execution_id"].as_str().map(str::to_owned),
        depth: crate::documents::depth_of(ctx),
    };
    let report = runtime
        .run_action(
            reference,
            &Value::Object(params.clone()).to_string(),
            context,
        )
        .await;
    let captured = &report.captured;
    let logs: Vec<Value> = captured
        .logs
        .iter()
        .map(|l| {
            let fields: Map<String, Value> =
                l.fields.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            json!({"level": serde_json::to_value(l.level).unwrap_or(Value::Null), "message": l.message, "fields": fields})
        })
        .collect();
    let plugin = report
        .plugin
        .as_ref()
        .map_or_else(|| reference.to_owned(), ToString::to_string);
    let mut result = json!({
        "stdout": captured.stdout,
        "stderr": captured.stderr,
        "logs": logs,
        "plugin": plugin,
    });
    if captured.truncated() {
        result["truncated"] = json!(true);
    }
    if !report.outbound.is_empty() {
        // What the plugin did on the network: method, url without query, status, time, bytes.
        result["http"] = serde_json::to_value(&report.outbound).unwrap_or(Value::Null);
    }
    let status = match report.result {
        Ok(value) => {
            result["result"] = value;
            ExecutionStatus::Succeeded
        }
        Err(err) => {
            result["error"] = json!(err.to_string());
            result["error_kind"] = json!(err.kind());
            if err.is_timeout() {
                ExecutionStatus::Timeout
            } else {
                ExecutionStatus::Failed
            }
        }
    };
    Outcome { status, result }
}
