//! JSON schema validation with StackStorm's conventions and Python-style messages.
//!
//! StackStorm writes schemas with Draft 3's `required: true` on a property. Before they are
//! compiled as Draft 4, those flags become the parent's `required` list. Error messages are
//! worded as Python's `jsonschema` words them (`'x' is not of type 'object'`), because clients
//! and StackStorm's own tests match on that wording.

use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::Value;

use crate::triggers::python_repr;

/// Rewrites `properties.<p>.required: true` into the parent's `required` array, recursively.
pub fn normalize(schema: &Value) -> Value {
    match schema {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            let mut required: Vec<Value> = match map.get("required") {
                Some(Value::Array(list)) => list.clone(),
                _ => Vec::new(),
            };
            for (key, value) in map {
                match key.as_str() {
                    "required" => {}
                    "properties" => {
                        let mut props = serde_json::Map::new();
                        for (name, prop) in value.as_object().into_iter().flatten() {
                            if prop.get("required") == Some(&Value::Bool(true))
                                && !required.contains(&Value::String(name.clone()))
                            {
                                required.push(Value::String(name.clone()));
                            }
                            props.insert(name.clone(), normalize(prop));
                        }
                        out.insert(key.clone(), Value::Object(props));
                    }
                    _ => {
                        out.insert(key.clone(), normalize(value));
                    }
                }
            }
            if !required.is_empty() {
                out.insert("required".into(), Value::Array(required));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

/// Validates `instance` against a StackStorm-style `schema` (Draft 4).
///
/// # Errors
///
/// The first violation, worded as Python's `jsonschema` words it; or why the schema itself is
/// invalid.
pub fn validate(schema: &Value, instance: &Value) -> Result<(), String> {
    let schema = normalize(schema);
    let validator = jsonschema::draft4::new(&schema).map_err(|e| format!("invalid schema: {e}"))?;
    match validator.validate(instance) {
        Ok(()) => Ok(()),
        Err(err) => {
            Err(python_message(err.instance(), err.kind()).unwrap_or_else(|| err.to_string()))
        }
    }
}

fn python_message(instance: &Value, kind: &ValidationErrorKind) -> Option<String> {
    let repr = python_repr(instance);
    Some(match kind {
        ValidationErrorKind::Type { kind } => {
            let types: Vec<String> = match kind {
                TypeKind::Single(t) => vec![format!("'{t}'")],
                TypeKind::Multiple(set) => set.iter().map(|t| format!("'{t}'")).collect(),
            };
            format!("{repr} is not of type {}", types.join(", "))
        }
        ValidationErrorKind::Required { property } => {
            format!("{} is a required property", python_repr(property))
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let names: Vec<String> = unexpected
                .iter()
                .map(|n| python_repr(&Value::String(n.clone())))
                .collect();
            let verb = if names.len() == 1 { "was" } else { "were" };
            format!(
                "Additional properties are not allowed ({} {verb} unexpected)",
                names.join(", ")
            )
        }
        ValidationErrorKind::Enum { options } => {
            format!("{repr} is not one of {}", python_repr(options))
        }
        ValidationErrorKind::Minimum { limit } => {
            format!("{repr} is less than the minimum of {limit}")
        }
        ValidationErrorKind::Maximum { limit } => {
            format!("{repr} is greater than the maximum of {limit}")
        }
        ValidationErrorKind::MinLength { .. } => format!("{repr} is too short"),
        ValidationErrorKind::MaxLength { .. } => format!("{repr} is too long"),
        ValidationErrorKind::Pattern { pattern } => format!(
            "{repr} does not match {}",
            python_repr(&Value::String(pattern.clone()))
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn draft3_required_flags_become_a_list() {
        let schema = json!({"type": "object", "properties": {"url": {"type": "string", "required": true}}, "additionalProperties": false});
        assert_eq!(normalize(&schema)["required"], json!(["url"]));
        assert_eq!(
            validate(&schema, &json!({})).unwrap_err(),
            "'url' is a required property"
        );
        assert_eq!(
            validate(&schema, &json!({"url": "x", "foo": 1})).unwrap_err(),
            "Additional properties are not allowed ('foo' was unexpected)"
        );
        assert!(validate(&schema, &json!({"url": "x"})).is_ok());
    }

    #[test]
    fn messages_read_like_pythons() {
        let schema = json!({"type": "object"});
        assert_eq!(
            validate(&schema, &json!("invalid")).unwrap_err(),
            "'invalid' is not of type 'object'"
        );
        assert_eq!(
            validate(&schema, &Value::Null).unwrap_err(),
            "None is not of type 'object'"
        );
    }
}
