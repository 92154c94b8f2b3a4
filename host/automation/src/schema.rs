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

/// [`validate`], with the whole text of Python's `jsonschema` error, as StackStorm answers a
/// rule or trigger whose trigger parameters fail their type's `parameters_schema`
/// (`str(ValidationError)`: the message, the failed keyword and the schema it is in, and the
/// instance, each pretty-printed as Python's `pprint` prints them).
///
/// # Errors
///
/// The first violation, in full; or why the schema itself is invalid.
pub fn validate_verbose(schema: &Value, instance: &Value) -> Result<(), String> {
    let normalized = normalize(schema);
    let validator =
        jsonschema::draft4::new(&normalized).map_err(|e| format!("invalid schema: {e}"))?;
    let Err(err) = validator.validate(instance) else {
        return Ok(());
    };
    let message = python_message(err.instance(), err.kind()).unwrap_or_else(|| err.to_string());
    let mut schema_path: Vec<PathItem> = err.schema_path().iter().map(PathItem::from).collect();
    let keyword = match schema_path.pop() {
        Some(PathItem::Key(k)) => k,
        Some(PathItem::Index(i)) => i.to_string(),
        None => return Err(message),
    };
    // The schema as written (Draft 3 flags and all), at the keyword's place.
    let sub_schema = walk(schema, &schema_path)
        .or_else(|| walk(&normalized, &schema_path))
        .unwrap_or(schema);
    let instance_path: Vec<PathItem> = err.instance_path().iter().map(PathItem::from).collect();
    Err(format!(
        "{message}\n\nFailed validating {} in schema{}:\n{}\n\nOn instance{}:\n{}",
        python_repr(&Value::String(keyword)),
        as_index(&schema_path),
        indent(&pformat(sub_schema, 0, 0)),
        as_index(&instance_path),
        indent(&pformat(err.instance(), 0, 0)),
    ))
}

/// One step of a schema or instance path.
enum PathItem {
    Key(String),
    Index(usize),
}

impl From<jsonschema::paths::LocationSegment<'_>> for PathItem {
    fn from(segment: jsonschema::paths::LocationSegment<'_>) -> Self {
        match segment {
            jsonschema::paths::LocationSegment::Property(p) => Self::Key(p.into_owned()),
            jsonschema::paths::LocationSegment::Index(i) => Self::Index(i),
        }
    }
}

fn walk<'v>(value: &'v Value, path: &[PathItem]) -> Option<&'v Value> {
    path.iter().try_fold(value, |v, step| match step {
        PathItem::Key(k) => v.get(k.as_str()),
        PathItem::Index(i) => v.get(*i),
    })
}

/// Python's `jsonschema._utils.format_as_index`: `['properties']['param1']`.
fn as_index(path: &[PathItem]) -> String {
    path.iter()
        .map(|step| match step {
            PathItem::Key(k) => format!("[{}]", python_repr(&Value::String(k.clone()))),
            PathItem::Index(i) => format!("[{i}]"),
        })
        .collect()
}

/// Python's `jsonschema._utils.indent`: four spaces before every line.
fn indent(text: &str) -> String {
    text.lines()
        .map(|line| format!("    {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Python's `pprint.pformat(value, width=72)` of the equivalent object, written from column
/// `indent` with `allowance` characters to follow it on its last line (a closing bracket or a
/// comma): keys sorted, one line when it fits, else one item a line, aligned under the
/// opening bracket (CPython's `PrettyPrinter._format` and `_format_dict_items`).
fn pformat(value: &Value, indent: usize, allowance: usize) -> String {
    const WIDTH: usize = 72;
    let flat = python_repr(&sorted(value));
    if flat.chars().count() <= WIDTH.saturating_sub(indent + allowance) {
        return flat;
    }
    let (open, close, items): (char, char, Vec<String>) = match value {
        Value::Object(map) if !map.is_empty() => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let last = keys.len() - 1;
            let items = keys
                .into_iter()
                .enumerate()
                .map(|(i, k)| {
                    let key = python_repr(&Value::String(k.clone()));
                    let at = indent + 1 + key.chars().count() + 2;
                    let after = if i == last { allowance + 1 } else { 1 };
                    format!("{key}: {}", pformat(&map[k], at, after))
                })
                .collect();
            ('{', '}', items)
        }
        Value::Array(list) if !list.is_empty() => {
            let last = list.len() - 1;
            let items = list
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let after = if i == last { allowance + 1 } else { 1 };
                    pformat(v, indent + 1, after)
                })
                .collect();
            ('[', ']', items)
        }
        _ => return flat,
    };
    format!(
        "{open}{}{close}",
        items.join(&format!(",\n{}", " ".repeat(indent + 1)))
    )
}

/// `value` with every object's keys in order (`pprint` sorts them).
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&map[k])))
                    .collect(),
            )
        }
        Value::Array(list) => Value::Array(list.iter().map(sorted).collect()),
        other => other.clone(),
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

    /// `test_rules.py` `test_post_invalid_custom_trigger_parameter_trigger_param_validation_enabled`:
    /// the whole text of Python's `str(ValidationError)`.
    #[test]
    fn verbose_errors_are_pythons_whole_text() {
        let schema = json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {"param1": {"type": "string", "required": true}}
        });
        assert_eq!(
            validate_verbose(&schema, &json!({"param1": 12345})).unwrap_err(),
            "12345 is not of type 'string'\n\nFailed validating 'type' in schema['properties']['param1']:\n    {'required': True, 'type': 'string'}\n\nOn instance['param1']:\n    12345"
        );
        assert!(validate_verbose(&schema, &json!({"param1": "x"})).is_ok());
        let long = json!({"a": "x".repeat(40), "b": "y".repeat(40)});
        assert_eq!(
            pformat(&long, 0, 0),
            format!("{{'a': '{}',\n 'b': '{}'}}", "x".repeat(40), "y".repeat(40))
        );
        // Python: pprint.pformat({'additionalProperties': False, 'properties': {'url':
        // {'required': True, 'type': 'string'}}, 'type': 'object'}, width=72)
        let webhook = json!({
            "type": "object",
            "properties": {"url": {"type": "string", "required": true}},
            "additionalProperties": false
        });
        assert_eq!(
            pformat(&webhook, 0, 0),
            "{'additionalProperties': False,\n 'properties': {'url': {'required': True, 'type': 'string'}},\n 'type': 'object'}"
        );
        // An item that would fit but for the closing bracket after it goes on lines of its own.
        let tight = json!({"k": {"a": "x".repeat(30), "b": "y".repeat(18)}});
        assert_eq!(
            pformat(&tight, 0, 0),
            format!(
                "{{'k': {{'a': '{}',\n       'b': '{}'}}}}",
                "x".repeat(30),
                "y".repeat(18)
            )
        );
    }

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
