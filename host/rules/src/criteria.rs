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
    pub error: Option<CriteriaError>,
}

/// Why evaluating criteria stopped, with StackStorm's messages (`st2reactor/rules/filter.py`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CriteriaError {
    /// An operator raised (a type error, an invalid regex...): StackStorm reports
    /// `There might be a problem with the criteria in rule <ref>: <exception>`.
    Operator(String),
    /// A key that does not parse, a pattern that does not render, an unknown operator: the
    /// whole message.
    Other(String),
}

impl CriteriaError {
    /// The failure reason for rule `rule_ref`, as StackStorm words it.
    pub fn reason(&self, rule_ref: &str) -> String {
        match self {
            Self::Operator(e) => {
                format!("There might be a problem with the criteria in rule {rule_ref}: {e}")
            }
            Self::Other(message) => message.clone(),
        }
    }
}

impl std::fmt::Display for CriteriaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Operator(e) => write!(f, "There might be a problem with the criteria: {e}"),
            Self::Other(message) => f.write_str(message),
        }
    }
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
) -> Result<CriterionResult, CriteriaError> {
    let operator = criterion
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| CriteriaError::Other(format!("Operator not specified for field: {key}")))?;
    let op = Operator::from_name(operator).ok_or_else(|| {
        CriteriaError::Other(format!(
            "For field: {key}, operator {operator} not in list of allowed operators"
        ))
    })?;
    let raw_pattern = criterion.get("pattern").cloned().unwrap_or(Value::Null);
    let value = jsonpath::resolve(context, key).map_err(|e| {
        CriteriaError::Other(format!("Failed transforming criteria key {key}: {e}"))
    })?;
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
    let pattern = renderer
        .render_pattern(&raw_pattern, context)
        .map_err(|e| {
            CriteriaError::Other(format!(
                "Failed to render pattern value \"{}\" for key \"{key}\": {e}",
                display(&raw_pattern)
            ))
        })?;
    let passed = op
        .apply(value.as_ref(), &pattern)
        .map_err(|e| CriteriaError::Operator(e.to_string()))?;
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
) -> Result<bool, CriteriaError> {
    let children = children.as_object().ok_or_else(|| {
        CriteriaError::Operator("search needs a pattern of child criteria".into())
    })?;
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
        other => Err(CriteriaError::Operator(format!(
            "Unrecognized condition: {other:?}"
        ))),
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
        let payload = json!({"body": {"a": 1, "s": "text"}});
        let cases = [
            (
                json!({"trigger.body[x]": {"type": "exists", "pattern": "x"}}),
                "Failed transforming criteria key",
            ),
            (
                json!({"trigger.body.a": {"type": "equals", "pattern": "{{ nope }}"}}),
                "Failed to render pattern value \"{{ nope }}\" for key \"trigger.body.a\"",
            ),
            // An operator that raises: StackStorm's message
            // (st2reactor/tests/unit/test_rule_matcher.py::test_rule_matching_exception... ,
            // "There might be a problem with the criteria in rule <ref>: <exception>").
            (
                json!({"trigger.body.a": {"type": "lt", "pattern": "x"}}),
                "There might be a problem with the criteria in rule t.rule: ",
            ),
            (
                json!({"trigger.body.s": {"type": "regex", "pattern": "("}}),
                "There might be a problem with the criteria in rule t.rule: invalid regex",
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
                out.error
                    .as_ref()
                    .is_some_and(|e| e.reason("t.rule").contains(reason)),
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
                .to_string()
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

    /// `st2reactor/tests/unit/test_filter.py`: patterns rendered with `to_complex`, so types
    /// survive and a `{% for %}` that builds a JSON list compares as a list.
    #[test]
    fn patterns_render_as_stackstorm_renders_them() {
        let payload = json!({"p1": "v1", "p2": "preYYYpost", "bool": true, "int": 1, "float": 0.8, "list": ["v1", true, 1]});
        let passes = |key: &str, pattern: &str| {
            eval(
                json!({ key: {"type": "equals", "pattern": pattern} }),
                payload.clone(),
            )
            .matched
        };
        assert!(passes("trigger.p1", "{{trigger.p1}}"));
        assert!(passes("trigger.p1", "{{'%s' % trigger.p1 if trigger.int}}"));
        let list_pattern = r#"
                    [
                        {% for item in trigger.list %}
                        {{item}}{% if not loop.last %},{% endif %}
                        {% endfor %}
                    ]
                "#;
        assert!(passes("trigger.list", list_pattern));
        assert!(!passes("trigger.p1", "{{trigger.p2}}"));
        let not_json = r#"
                    [
                        {% for item in trigger.list %}
                        {{item}}
                        {% endfor %}
                    ]
                "#;
        assert!(!passes("trigger.list", not_json));
        assert!(passes("trigger.bool", "{{trigger.bool}}"));
        assert!(passes("trigger.bool", "{{ trigger.bool }}"));
        assert!(passes("trigger.int", "{{trigger.int}}"));
        assert!(passes("trigger.float", "{{trigger.float}}"));
        // `test_criteria_pattern_references_a_datastore_item`, with a real datastore: a missing
        // key is "" (no error), a key's value compares, and works inside text.
        assert!(!passes("trigger.p1", "{{ st2kv.system.inexistent_value }}"));
        let kv = json!({"st2kv": {"system": {"test_value_2": "v1", "test_value_3": "YYY"}}});
        let with_kv = |key: &str, pattern: &str| {
            evaluate_criteria(
                json!({ key: {"type": "equals", "pattern": pattern} })
                    .as_object()
                    .unwrap(),
                &payload,
                kv.as_object().unwrap(),
                &Renderer::new(),
            )
            .matched
        };
        assert!(with_kv("trigger.p1", "{{ st2kv.system.test_value_2 }}"));
        assert!(!with_kv("trigger.p2", "{{ st2kv.system.test_value_3 }}"));
        assert!(with_kv(
            "trigger.p2",
            "pre{{ st2kv.system.test_value_3 }}post"
        ));
    }
}
