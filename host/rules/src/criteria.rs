//! A rule's criteria: each key resolved, each pattern rendered, each operator applied; ANDed.
//!
//! The outcome says which criterion decided and why, so the rule tester can explain a
//! non-match and the engine can record a failed enforcement for an error.

use serde_json::{Map, Value};

use crate::jsonpath;
use crate::operators::Operator;
use crate::template::Renderer;

/// How one criterion went.
#[derive(Debug, Clone, PartialEq)]
pub struct CriterionResult {
    /// The key as written (with any `#suffix`).
    pub key: String,
    /// The operator as written.
    pub operator: String,
    /// The value the key found (`None`: nothing).
    pub value: Option<Value>,
    /// The rendered pattern.
    pub pattern: Value,
    /// Whether it held.
    pub passed: bool,
}

/// How a rule's criteria went.
#[derive(Debug, Clone, PartialEq)]
pub struct CriteriaOutcome {
    /// Whether every criterion held.
    pub matched: bool,
    /// The criteria evaluated, in order, up to the first that failed.
    pub results: Vec<CriterionResult>,
    /// An error that stopped evaluation (bad key, bad pattern, operator error): the reason
    /// of a failed enforcement.
    pub error: Option<String>,
}

/// Evaluates `criteria` (StackStorm's `{key: {type, pattern, condition?}}`) against a trigger
/// payload. `extra` holds the other template variables (`st2kv`, ...).
pub fn evaluate_criteria(
    criteria: &Map<String, Value>,
    payload: &Value,
    extra: &Map<String, Value>,
    renderer: &Renderer,
) -> CriteriaOutcome {
    let mut outcome = CriteriaOutcome {
        matched: true,
        results: Vec::new(),
        error: None,
    };
    if criteria.is_empty() {
        return outcome;
    }
    // With criteria, an empty or falsy payload never matches.
    if is_falsy(payload) {
        outcome.matched = false;
        return outcome;
    }
    let mut context = extra.clone();
    context.insert("trigger".into(), payload.clone());
    let context = Value::Object(context);
    for (key, criterion) in criteria {
        match evaluate_one(key, criterion, &context, renderer) {
            Ok(result) => {
                let passed = result.passed;
                outcome.results.push(result);
                if !passed {
                    outcome.matched = false;
                    return outcome;
                }
            }
            Err(error) => {
                outcome.matched = false;
                outcome.error = Some(error);
                return outcome;
            }
        }
    }
    outcome
}

fn evaluate_one(
    key: &str,
    criterion: &Value,
    context: &Value,
    renderer: &Renderer,
) -> Result<CriterionResult, String> {
    let operator = criterion
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("Operator not specified for field: {key}"))?;
    let op = Operator::from_name(operator).ok_or_else(|| {
        format!("For field: {key}, operator {operator} not in list of allowed operators")
    })?;
    let raw_pattern = criterion.get("pattern").cloned().unwrap_or(Value::Null);
    let value = jsonpath::resolve(context, key)
        .map_err(|e| format!("Failed transforming criteria key {key}: {e}"))?
        .cloned();
    if op == Operator::Search {
        let condition = criterion
            .get("condition")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let passed = search(value.as_ref(), &raw_pattern, condition, context, renderer)?;
        return Ok(CriterionResult {
            key: key.into(),
            operator: operator.into(),
            value,
            pattern: raw_pattern,
            passed,
        });
    }
    let pattern = renderer.render(&raw_pattern, context).map_err(|e| {
        format!(
            "Failed to render pattern value \"{}\" for key \"{key}\": {e}",
            display(&raw_pattern)
        )
    })?;
    let passed = op
        .apply(value.as_ref(), &pattern)
        .map_err(|e| format!("{operator} failed for key \"{key}\": {e}"))?;
    Ok(CriterionResult {
        key: key.into(),
        operator: operator.into(),
        value,
        pattern,
        passed,
    })
}

/// `search`: child criteria (keys `item.<...>`) over each element of a list (a dict counts as a
/// one-element list), combined by `condition`.
fn search(
    value: Option<&Value>,
    children: &Value,
    condition: &str,
    context: &Value,
    renderer: &Renderer,
) -> Result<bool, String> {
    let children = children
        .as_object()
        .ok_or("search needs a pattern of child criteria")?;
    let items: Vec<&Value> = match value {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(object @ Value::Object(_)) => vec![object],
        _ => return Ok(false),
    };
    let mut per_item = Vec::with_capacity(items.len());
    for item in items {
        let mut ctx = context.as_object().cloned().unwrap_or_default();
        ctx.insert("item".into(), item.clone());
        let ctx = Value::Object(ctx);
        let mut results = Vec::with_capacity(children.len());
        for (key, criterion) in children {
            results.push(evaluate_one(key, criterion, &ctx, renderer)?.passed);
        }
        per_item.push(results);
    }
    let all_children = |r: &Vec<bool>| r.iter().all(|&b| b);
    let any_child = |r: &Vec<bool>| r.iter().any(|&b| b);
    match condition {
        "any" => Ok(per_item.iter().any(all_children)),
        "all" => Ok(per_item.iter().all(all_children)),
        "any2any" => Ok(per_item.iter().any(any_child)),
        "all2any" => Ok(per_item.iter().all(any_child)),
        other => Err(format!("Unrecognized condition: {other:?}")),
    }
}

/// Python's falsiness of a JSON value: null, false, 0, empty string, list or object.
pub fn is_falsy(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

fn display(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(criteria: Value, payload: Value) -> CriteriaOutcome {
        let kv = json!({"st2kv": {"system": {"branch": "main"}}});
        evaluate_criteria(
            criteria.as_object().unwrap(),
            &payload,
            kv.as_object().unwrap(),
            &Renderer::new(),
        )
    }

    #[test]
    fn criteria_are_anded_and_the_failing_one_is_named() {
        let payload = json!({"body": {"ref": "refs/heads/main", "n": 5}, "headers": {"X-Github-Event": "push"}});
        let ok = eval(
            json!({
                "trigger.body.ref": {"type": "endswith", "pattern": "{{ st2kv.system.branch }}"},
                "trigger.headers['X-Github-Event']": {"type": "equals", "pattern": "push"},
                "trigger.body.n": {"type": "gt", "pattern": 3},
                "trigger.body.n#again": {"type": "lt", "pattern": "{{ 10 }}"}
            }),
            payload.clone(),
        );
        assert!(ok.matched, "{ok:?}");
        assert_eq!(ok.results.len(), 4);

        let no = eval(
            json!({
                "trigger.body.ref": {"type": "equals", "pattern": "refs/heads/main"},
                "trigger.body.n": {"type": "equals", "pattern": "5"}
            }),
            payload.clone(),
        );
        assert!(!no.matched && no.error.is_none());
        let failed = no.results.last().unwrap();
        assert_eq!(
            (
                failed.key.as_str(),
                failed.value.clone(),
                failed.pattern.clone()
            ),
            ("trigger.body.n", Some(json!(5)), json!("5"))
        );
    }

    #[test]
    fn errors_fail_the_criterion_with_a_reason() {
        let payload = json!({"body": {"a": 1}});
        let cases = [
            (
                json!({"trigger.body.a-b": {"type": "exists", "pattern": "x"}}),
                "Failed transforming criteria key",
            ),
            (
                json!({"trigger.body.a": {"type": "equals", "pattern": "{{ nope }}"}}),
                "Failed to render pattern value \"{{ nope }}\" for key \"trigger.body.a\"",
            ),
            (
                json!({"trigger.body.a": {"type": "lt", "pattern": "x"}}),
                "lt failed for key",
            ),
            (
                json!({"trigger.body.a": {"type": "regex", "pattern": "("}}),
                "regex failed",
            ),
            (
                json!({"trigger.body.a": {"type": "bogus", "pattern": 1}}),
                "not in list of allowed operators",
            ),
        ];
        for (criteria, reason) in cases {
            let out = eval(criteria.clone(), payload.clone());
            assert!(!out.matched, "{criteria}");
            assert!(
                out.error.as_deref().is_some_and(|e| e.contains(reason)),
                "{criteria}: {:?}",
                out.error
            );
        }
    }

    #[test]
    fn empty_payloads_never_match_rules_with_criteria() {
        assert!(
            !eval(
                json!({"trigger.a": {"type": "nexists", "pattern": "x"}}),
                json!({})
            )
            .matched
        );
        assert!(eval(json!({}), json!({})).matched, "no criteria: always");
    }

    #[test]
    fn search_conditions() {
        let payload = json!({"body": {"items": [
            {"name": "a", "state": "ok"},
            {"name": "b", "state": "failed"}
        ]}});
        let search = |condition: &str, state: &str| {
            eval(
                json!({"trigger.body.items": {"type": "search", "condition": condition, "pattern": {
                    "item.name": {"type": "equals", "pattern": "b"},
                    "item.state": {"type": "equals", "pattern": state}
                }}}),
                payload.clone(),
            )
        };
        assert!(search("any", "failed").matched);
        assert!(!search("any", "ok").matched);
        assert!(!search("all", "failed").matched);
        assert!(search("any2any", "ok").matched);
        assert!(
            search("all2any", "ok").matched,
            "a matches on state, b on name"
        );
        assert!(!search("all2any", "failed").matched, "a matches no child");
        assert!(
            search("sometimes", "ok")
                .error
                .unwrap()
                .contains("Unrecognized condition")
        );
        // A dict value is a one-element list.
        let single = eval(
            json!({"trigger.body": {"type": "search", "condition": "all", "pattern": {
                "item.items[0].name": {"type": "equals", "pattern": "a"}
            }}}),
            payload.clone(),
        );
        assert!(single.matched, "{single:?}");
    }
}
