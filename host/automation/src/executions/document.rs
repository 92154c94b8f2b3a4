//! The execution as the API shows it: building its document, moving its status (each move
//! logged in the document), completing it with an outcome, and masking secret parameters.

use serde_json::{Map, Value, json};
use stormhook_storage::{Execution, ExecutionStatus, ids};

use crate::actions::{self, Action, Outcome, RunnerType};

use super::RequestError;

pub(super) fn runner_of(action: &Action) -> Result<&'static RunnerType, RequestError> {
    actions::runner_type(&action.runner_type).ok_or_else(|| {
        RequestError::Invalid(format!(
            "Action \"{}\" has an unknown runner type \"{}\".",
            action.reference, action.runner_type
        ))
    })
}

/// The JSON schema of an action's parameters (StackStorm's `additionalProperties: false`).
/// As StackStorm validates them (`validate(..., allow_default_none=True)`,
/// `modify_schema_allow_default_none`), an optional parameter whose default is `null` or
/// absent may be `null`.
pub(super) fn parameters_schema(declared: &Map<String, Value>) -> Value {
    let properties: Map<String, Value> = declared
        .iter()
        .map(|(name, schema)| {
            let mut schema = schema.clone();
            if let Some(obj) = schema.as_object_mut() {
                // Not JSON-schema keywords.
                for k in ["immutable", "secret", "position"] {
                    obj.remove(k);
                }
                let optional = obj.get("required") != Some(&Value::Bool(true));
                let default_none = obj.get("default").is_none_or(Value::is_null);
                if optional && default_none {
                    allow_null(obj);
                }
            }
            (name.clone(), schema)
        })
        .collect();
    json!({"type": "object", "properties": properties, "additionalProperties": false})
}

/// Lets a parameter's schema accept `null` (a `null` type added to its `type`, `anyOf` or
/// `oneOf`; an untyped one accepts it already).
fn allow_null(schema: &mut Map<String, Value>) {
    let null = json!("null");
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(options)) = schema.get_mut(key) {
            if !options.iter().any(|o| o["type"] == null) {
                options.push(json!({"type": "null"}));
            }
            return;
        }
    }
    match schema.get_mut("type") {
        Some(Value::String(kind)) if kind != "null" => {
            let kind = std::mem::take(kind);
            schema.insert("type".into(), json!([kind, "null"]));
        }
        Some(Value::Array(kinds)) if !kinds.contains(&null) => kinds.push(null),
        _ => {}
    }
}

/// The names of an execution document's parameters that its runner or action declares
/// `secret: true`.
pub fn secret_parameters(doc: &Value) -> Vec<String> {
    [
        &doc["runner"]["runner_parameters"],
        &doc["action"]["parameters"],
    ]
    .into_iter()
    .filter_map(Value::as_object)
    .flat_map(|schemas| {
        schemas
            .iter()
            .filter(|(_, s)| s.get("secret").and_then(Value::as_bool) == Some(true))
            .map(|(k, _)| k.clone())
    })
    .collect()
}

/// Masks the `secret: true` fields of the result under the runner's `output_key`
/// (`result.<output_key>`) as the action's `output_schema` declares them, as StackStorm's
/// `output_schema.mask_secret_output` does: nested objects (`properties`,
/// `additionalProperties`) and arrays (`items`, a list of `items`, `additionalItems`); a legacy
/// schema without `type` is read as the `properties` of an object. (`patternProperties` is
/// not followed.)
pub fn mask_secret_output(doc: &mut Value) {
    let Some(key) = doc["runner"]["output_key"].as_str().map(str::to_owned) else {
        return;
    };
    let schema = match &doc["action"]["output_schema"] {
        Value::Object(schema) if schema.is_empty() => return,
        Value::Object(schema) if schema.get("type").is_some_and(Value::is_string) => {
            Value::Object(schema.clone())
        }
        Value::Object(legacy) if !legacy.contains_key("type") => {
            json!({"type": "object", "properties": legacy, "additionalProperties": true})
        }
        _ => return,
    };
    if let Some(output) = doc.pointer_mut(&format!("/result/{key}")) {
        mask_by_schema(&schema, output);
    }
}

/// `_get_masked_value`: `value` with what `spec` declares secret replaced by `********`.
fn mask_by_schema(spec: &Value, value: &mut Value) {
    if spec.get("secret").and_then(Value::as_bool) == Some(true) {
        *value = json!("********");
        return;
    }
    match (spec.get("type").and_then(Value::as_str), value) {
        (Some("object"), Value::Object(map)) => {
            let properties = spec.get("properties").and_then(Value::as_object);
            for (key, item) in map.iter_mut() {
                match properties.and_then(|p| p.get(key)) {
                    Some(property) => mask_by_schema(property, item),
                    None => {
                        if let Some(extra) =
                            spec.get("additionalProperties").filter(|s| s.is_object())
                        {
                            mask_by_schema(extra, item);
                        }
                    }
                }
            }
        }
        (Some("array"), Value::Array(items)) => {
            let (listed, handled) = match spec.get("items") {
                Some(Value::Array(specs)) => (Some(specs), specs.len()),
                _ => (None, items.len()),
            };
            for (i, item) in items.iter_mut().enumerate() {
                let item_spec = match listed {
                    Some(specs) => specs.get(i),
                    None => spec.get("items"),
                };
                match item_spec {
                    Some(item_spec) => mask_by_schema(item_spec, item),
                    None if i >= handled => {
                        if let Some(extra) = spec.get("additionalItems").filter(|s| s.is_object()) {
                            mask_by_schema(extra, item);
                        }
                    }
                    None => {}
                }
            }
        }
        _ => {}
    }
}

/// Replaces the values of the `secret` parameters in `params` with `********`.
pub fn mask(params: &mut Value, secret: &[String]) {
    if let Some(params) = params.as_object_mut() {
        for name in secret {
            if let Some(value) = params.get_mut(name) {
                *value = json!("********");
            }
        }
    }
}

/// An execution's parameters with the secret ones masked, as StackStorm's notifier puts them
/// in the action trigger (`liveaction_db.get_masked_parameters()`): a trigger instance is
/// served to every API user and templated by any rule.
pub(super) fn masked_parameters(doc: &Value) -> Value {
    let mut params = doc["parameters"].clone();
    mask(&mut params, &secret_parameters(doc));
    params
}

/// A new execution, `requested`, with its log's first entry.
pub(super) fn new_execution(
    id: &str,
    action: &Action,
    runner: &RunnerType,
    given: &Map<String, Value>,
    context: Value,
    user: Option<String>,
) -> Execution {
    let now = ids::now();
    let document = json!({
        "id": id,
        "action": action.json(),
        "runner": runner.json(),
        "liveaction": {
            "id": ids::object_id(),
            "action": action.reference,
            "parameters": given,
            "callback": {},
            "runner_info": {},
            "action_is_workflow": false,
        },
        "status": ExecutionStatus::Requested,
        "start_timestamp": now,
        "parameters": given,
        "context": context,
        "log": [{"status": ExecutionStatus::Requested, "timestamp": now}],
    });
    Execution {
        id: id.to_owned(),
        action_ref: action.reference.clone(),
        runner: runner.name.to_owned(),
        status: ExecutionStatus::Requested,
        start_timestamp: now,
        end_timestamp: None,
        user,
        rule_ref: None,
        trigger_instance_id: None,
        due_at: None,
        run_parameters: json!({}),
        document,
    }
}

/// Delays a new execution by `ms` milliseconds, as StackStorm's scheduler entrypoint does:
/// `delayed` (logged after `requested`), with `delay` in the document and its liveaction, and
/// due at its start plus the delay (at most 100 years on: a delay that ends later is as good as
/// never due).
pub(super) fn delay(execution: &mut Execution, ms: u64) {
    transition(execution, ExecutionStatus::Delayed);
    execution.document["delay"] = json!(ms);
    execution.document["liveaction"]["delay"] = json!(ms);
    execution.due_at = ids::later(
        &execution.start_timestamp,
        std::time::Duration::from_millis(ms),
    )
    .or_else(|| Some(ids::after(std::time::Duration::from_millis(ms))));
}

/// Moves a `delayed` execution that is due back to `requested`, where the worker claims it.
/// The move is not logged: as in StackStorm, the log goes from `delayed` to `scheduled`.
pub(super) fn promote(execution: &mut Execution) {
    execution.status = ExecutionStatus::Requested;
    execution.document["status"] = json!(ExecutionStatus::Requested);
}

/// Moves an execution to `status` and logs the move.
pub(super) fn transition(execution: &mut Execution, status: ExecutionStatus) {
    let now = ids::now();
    execution.status = status;
    execution.document["status"] = json!(status);
    if let Some(log) = execution.document["log"].as_array_mut() {
        log.push(json!({"status": status, "timestamp": now}));
    }
}

/// Completes an execution with `outcome`.
pub(super) fn finish(execution: &mut Execution, outcome: Outcome, hostname: &str) {
    transition(execution, outcome.status);
    let end = ids::now();
    let doc = &mut execution.document;
    doc["end_timestamp"] = json!(end);
    if let (Some(start), Some(stop)) = (
        ids::parse_time(&execution.start_timestamp),
        ids::parse_time(&end),
    ) {
        let micros = (stop - start).num_microseconds().unwrap_or(0);
        doc["elapsed_seconds"] = json!(micros as f64 / 1e6);
    }
    if !outcome.result.is_null() {
        set_result(execution, outcome.result);
    }
    let doc = &mut execution.document;
    if doc["liveaction"]["runner_info"]
        .as_object()
        .is_none_or(Map::is_empty)
    {
        doc["liveaction"]["runner_info"] = json!({"hostname": hostname, "pid": std::process::id()});
    }
    execution.end_timestamp = Some(end);
}

/// Sets an execution's result and its size (the length of its JSON, as StackStorm counts it).
pub(super) fn set_result(execution: &mut Execution, result: Value) {
    let doc = &mut execution.document;
    doc["result_size"] = json!(result.to_string().len());
    doc["result"] = result;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// StackStorm's `modify_schema_allow_default_none`, as `test_post_parameter_validation_explicit_none`
    /// relies on it: only optional parameters whose default is `null` or absent accept `null`.
    #[test]
    fn optional_parameters_without_a_default_accept_null() {
        let declared = json!({
            "plain": {"type": "string"},
            "listed": {"type": ["string", "integer"]},
            "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "defaulted": {"type": "integer", "default": 60},
            "null_default": {"type": "integer", "default": null},
            "needed": {"type": "string", "required": true},
            "untyped": {"secret": true},
        });
        let schema = parameters_schema(declared.as_object().unwrap());
        let props = &schema["properties"];
        assert_eq!(props["plain"]["type"], json!(["string", "null"]));
        assert_eq!(
            props["listed"]["type"],
            json!(["string", "integer", "null"])
        );
        assert_eq!(props["either"]["anyOf"][2], json!({"type": "null"}));
        assert_eq!(props["defaulted"]["type"], "integer");
        assert_eq!(props["null_default"]["type"], json!(["integer", "null"]));
        assert_eq!(props["needed"]["type"], "string");
        assert_eq!(props["untyped"], json!({}));
    }

    /// `output_schema.mask_secret_output`, following its `_get_masked_value` case by case:
    /// nested objects, `additionalProperties`, arrays of `items` and a list of `items` with
    /// `additionalItems`, and the legacy schema without `type`.
    #[test]
    fn secret_output_fields_are_masked() {
        let doc = |schema: Value, result: Value| json!({"runner": {"output_key": "result"}, "action": {"output_schema": schema}, "result": {"result": result, "stdout": "x"}});
        let mut d = doc(
            json!({"type": "object", "properties": {
                "a": {"type": "string", "secret": true},
                "o": {"type": "object", "properties": {"k": {"type": "string", "secret": true}}, "additionalProperties": {"type": "integer", "secret": true}},
                "l": {"type": "array", "items": {"type": "object", "properties": {"p": {"secret": true, "type": "string"}}}},
                "t": {"type": "array", "items": [{"type": "string"}, {"type": "string", "secret": true}], "additionalItems": {"type": "string", "secret": true}}
            }}),
            json!({"a": "1", "b": "2", "o": {"k": "3", "n": 4}, "l": [{"p": "5", "q": "6"}], "t": ["7", "8", "9"]}),
        );
        mask_secret_output(&mut d);
        assert_eq!(
            d["result"],
            json!({"result": {"a": "********", "b": "2", "o": {"k": "********", "n": "********"}, "l": [{"p": "********", "q": "6"}], "t": ["7", "********", "********"]}, "stdout": "x"})
        );
        let mut legacy = doc(
            json!({"token": {"type": "string", "secret": true}}),
            json!({"token": "t", "other": 1}),
        );
        mask_secret_output(&mut legacy);
        assert_eq!(
            legacy["result"]["result"],
            json!({"token": "********", "other": 1})
        );
        // No output key, no schema, or a result without the key: nothing to mask.
        let mut none = doc(json!({}), json!({"a": "1"}));
        mask_secret_output(&mut none);
        assert_eq!(none["result"]["result"], json!({"a": "1"}));
    }
}
