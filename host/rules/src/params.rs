//! Action parameters (`docs/st2-api.md` §3.4): a rule's `action.parameters` rendered as
//! Jinja with `trigger`, `st2kv`, `action_context`, `rule` (the values a rule component
//! returned) and every other parameter by name, in dependency order, then cast to the action's
//! declared types.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::template::Renderer;

/// Renders `given` parameters (plus the declared defaults not given) and casts them by the
/// declared schemas (`{name: {type, default, ...}}`). `context` holds `trigger`, `st2kv`, ...
///
/// # Errors
///
/// StackStorm's messages: `Dependency unsatisfied in variable "<name>"`,
/// `Cyclic dependency found in the following variables: ...`,
/// `Failed to render parameter "<p>": ...`, and cast failures.
pub fn render_parameters(
    given: &Map<String, Value>,
    declared: &Map<String, Value>,
    context: &Map<String, Value>,
    renderer: &Renderer,
) -> Result<Map<String, Value>, ParamsError> {
    let mut raw: BTreeMap<String, Value> = BTreeMap::new();
    for (name, schema) in declared {
        if let Some(default) = schema.get("default") {
            raw.insert(name.clone(), default.clone());
        }
    }
    for (name, value) in given {
        raw.insert(name.clone(), value.clone());
    }
    // Dependencies between parameters: the top-level names each template uses. Names the
    // template binds itself (loop variables, `set`, macros) are not reported by `variables`;
    // global functions (`range`, `dict`, `namespace`) are, and are no dependency unless a
    // parameter or context value of that name shadows them.
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, value) in &raw {
        let mut used = BTreeSet::new();
        variables(renderer, value, &mut used);
        for var in &used {
            if !raw.contains_key(var) && !context.contains_key(var) && !renderer.is_global(var) {
                return Err(ParamsError::DependencyUnsatisfied(var.clone()));
            }
        }
        used.retain(|v| raw.contains_key(v) && v != name);
        deps.insert(name.clone(), used);
    }
    let mut rendered: Map<String, Value> = Map::new();
    while rendered.len() < raw.len() {
        let ready: Vec<String> = deps
            .iter()
            .filter(|(name, needs)| {
                !rendered.contains_key(*name) && needs.iter().all(|n| rendered.contains_key(n))
            })
            .map(|(name, _)| name.clone())
            .collect();
        if ready.is_empty() {
            let stuck: Vec<&str> = deps
                .keys()
                .filter(|n| !rendered.contains_key(*n))
                .map(String::as_str)
                .collect();
            return Err(ParamsError::Cyclic(
                stuck.into_iter().map(str::to_owned).collect(),
            ));
        }
        for name in ready {
            let mut ctx = context.clone();
            ctx.extend(rendered.iter().map(|(k, v)| (k.clone(), v.clone())));
            let ctx = Value::Object(ctx);
            let value =
                render_deep(renderer, &raw[&name], &ctx).map_err(|reason| ParamsError::Render {
                    name: name.clone(),
                    reason,
                })?;
            let value = match declared
                .get(&name)
                .and_then(|s| s.get("type"))
                .and_then(Value::as_str)
            {
                Some(kind) => cast(&name, value, kind)?,
                None => value,
            };
            rendered.insert(name, value);
        }
    }
    Ok(rendered)
}

/// Why parameters could not be rendered; the messages are StackStorm's.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamsError {
    /// A template uses a name that is neither a parameter nor in the context.
    #[error("Dependency unsatisfied in variable \"{0}\"")]
    DependencyUnsatisfied(String),
    /// Parameters refer to each other in a cycle.
    #[error("Cyclic dependency found in the following variables: {}", .0.join(", "))]
    Cyclic(Vec<String>),
    /// A template failed to render.
    #[error("Failed to render parameter \"{name}\": {reason}")]
    Render {
        /// The parameter.
        name: String,
        /// The template's error.
        reason: String,
    },
    /// A rendered value does not cast to the declared type.
    #[error("Failed to cast parameter \"{name}\" to {kind}: {reason}")]
    Cast {
        /// The parameter.
        name: String,
        /// The declared type.
        kind: String,
        /// Why.
        reason: String,
    },
    /// A value declared `string` is neither a string nor null.
    #[error("Value \"{value}\" must either be a string or None. Got \"{type_name}\".")]
    NotAString {
        /// The value, as JSON.
        value: String,
        /// Its Python type name.
        type_name: String,
    },
}

impl ParamsError {
    /// Whether the parameters given are wrong in themselves (the request is refused and
    /// nothing is stored), rather than failing to render (StackStorm stores a `failed`
    /// execution).
    pub fn is_invalid_value(&self) -> bool {
        matches!(self, Self::NotAString { .. })
    }
}

/// The top-level variable names the templates inside `value` use.
fn variables(renderer: &Renderer, value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::String(s) if s.contains("{{") || s.contains("{%") => {
            out.extend(renderer.variables(s))
        }
        Value::Array(items) => items.iter().for_each(|v| variables(renderer, v, out)),
        Value::Object(map) => map.values().for_each(|v| variables(renderer, v, out)),
        _ => {}
    }
}

/// Renders every string inside `value`; a string that is exactly `{{ x }}` keeps `x`'s type.
fn render_deep(renderer: &Renderer, value: &Value, ctx: &Value) -> Result<Value, String> {
    Ok(match value {
        Value::String(_) => renderer.render(value, ctx)?,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render_deep(renderer, v, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_deep(renderer, v, ctx)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Casts a rendered value by the declared type, as StackStorm's `casts.py` does.
fn cast(name: &str, value: Value, kind: &str) -> Result<Value, ParamsError> {
    let fail = |reason: String| ParamsError::Cast {
        name: name.to_owned(),
        kind: kind.to_owned(),
        reason,
    };
    let Value::String(text) = &value else {
        return match (kind, &value) {
            ("string", Value::Null) => Ok(value),
            ("string", other) => Err(ParamsError::NotAString {
                value: other.to_string(),
                type_name: crate::operators::type_name(other).to_owned(),
            }),
            _ => Ok(value),
        };
    };
    Ok(match kind {
        "integer" => Value::from(
            text.trim()
                .parse::<i64>()
                .map_err(|e| fail(e.to_string()))?,
        ),
        "number" => serde_json::Number::from_f64(
            text.trim()
                .parse::<f64>()
                .map_err(|e| fail(e.to_string()))?,
        )
        .map_or(Value::Null, Value::Number),
        "boolean" => match text.trim().to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            other => return Err(fail(format!("{other:?} is not True or False"))),
        },
        "object" | "array" => serde_json::from_str(text).map_err(|e| fail(e.to_string()))?,
        _ => value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(given: Value, declared: Value) -> Result<Value, String> {
        render_typed(given, declared).map_err(|e| e.to_string())
    }

    fn render_typed(given: Value, declared: Value) -> Result<Value, ParamsError> {
        let context = json!({"trigger": {"body": {"n": "7", "user": "ada", "tags": ["a"]}}, "st2kv": {"system": {"greeting": "Hi"}}, "rule": {"branch": "main"}});
        render_parameters(
            given.as_object().unwrap(),
            declared.as_object().unwrap(),
            context.as_object().unwrap(),
            &Renderer::new(),
        )
        .map(Value::Object)
    }

    #[test]
    fn parameters_render_in_dependency_order_and_cast() {
        let out = render(
            json!({
                "message": "{{ greeting }}, {{ trigger.body.user }} on {{ rule.branch }}",
                "greeting": "{{ st2kv.system.greeting }}",
                "count": "{{ trigger.body.n }}",
                "tags": "{{ trigger.body.tags }}",
                "nested": {"who": "{{ trigger.body.user }}", "list": ["{{ trigger.body.tags }}"]},
                "flag": "TRUE"
            }),
            json!({"count": {"type": "integer"}, "flag": {"type": "boolean"}, "timeout": {"type": "integer", "default": 30}, "tags": {"type": "array"}}),
        )
        .unwrap();
        assert_eq!(out["message"], "Hi, ada on main");
        assert_eq!(
            out["count"], 7,
            "a rendered string cast to the declared integer"
        );
        assert_eq!(out["flag"], true);
        assert_eq!(out["timeout"], 30, "defaults are included");
        assert_eq!(out["tags"], json!(["a"]), "{{ var }} alone keeps its type");
        assert_eq!(out["nested"], json!({"who": "ada", "list": [["a"]]}));
    }

    #[test]
    fn errors_use_stackstorms_messages() {
        assert_eq!(
            render(json!({"a": "{{ nope }}"}), json!({})).unwrap_err(),
            "Dependency unsatisfied in variable \"nope\""
        );
        assert_eq!(
            render(json!({"a": "{{ b }}", "b": "{{ a }}"}), json!({})).unwrap_err(),
            "Cyclic dependency found in the following variables: a, b"
        );
        assert!(
            render(json!({"a": "{{ trigger.body.missing }}"}), json!({}))
                .unwrap_err()
                .starts_with("Failed to render parameter \"a\"")
        );
        assert!(
            render(json!({"n": "x"}), json!({"n": {"type": "integer"}}))
                .unwrap_err()
                .contains("Failed to cast parameter \"n\" to integer")
        );
        assert_eq!(
            render(json!({"s": 5}), json!({"s": {"type": "string"}})).unwrap_err(),
            "Value \"5\" must either be a string or None. Got \"int\"."
        );
    }
}
