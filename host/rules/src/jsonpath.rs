//! Criteria keys: the subset of jsonpath-rw 1.4 that StackStorm rules use.
//!
//! - Dotted names: `trigger.body.key1`. Names match `[a-zA-Z_@][a-zA-Z0-9_@]*`.
//! - Quoted names: `trigger.headers['X-Custom-Header']`, `trigger.headers.'X-Custom-Header'`,
//!   double quotes too.
//! - Indexes and wildcards: `trigger.body.items[0].name`, `items[*]`, `body.*`. Only the first
//!   match counts.
//! - A `#suffix` is removed first, so one field can carry several criteria.

use serde_json::Value;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A field by name.
    Field(String),
    /// Any field of an object.
    AnyField,
    /// An array element (negative counts from the end).
    Index(i64),
    /// Any array element.
    AnyIndex,
}

/// A key that is not valid jsonpath.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid criteria key {key:?}: {reason}")]
pub struct PathError {
    /// The key.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

/// Removes the `#suffix` of a criteria key.
pub fn strip_suffix(key: &str) -> &str {
    key.split_once('#').map_or(key, |(k, _)| k)
}

/// Parses a key (after `#suffix` removal) into steps.
///
/// # Errors
///
/// [`PathError`] for anything outside the supported grammar.
pub fn parse(key: &str) -> Result<Vec<Step>, PathError> {
    let err = |reason: &str| PathError {
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    let chars: Vec<char> = strip_suffix(key).trim().chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    let mut expect_name = true;
    if chars.is_empty() {
        return Err(err("empty key"));
    }
    while i < chars.len() {
        let c = chars[i];
        if expect_name {
            if c == '*' {
                steps.push(Step::AnyField);
                i += 1;
            } else if c == '\'' || c == '"' {
                let (name, next) = quoted(&chars, i).ok_or_else(|| err("unterminated quote"))?;
                steps.push(Step::Field(name));
                i = next;
            } else if c.is_ascii_alphabetic() || c == '_' || c == '@' {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '@')
                {
                    i += 1;
                }
                steps.push(Step::Field(chars[start..i].iter().collect()));
            } else {
                return Err(err(&format!("unexpected {c:?} at {i}")));
            }
            expect_name = false;
            continue;
        }
        match c {
            '.' => {
                expect_name = true;
                i += 1;
            }
            '[' => {
                let close = chars[i..]
                    .iter()
                    .position(|&c| c == ']')
                    .map(|p| p + i)
                    .ok_or_else(|| err("unclosed ["))?;
                let inner: String = chars[i + 1..close].iter().collect();
                let inner = inner.trim();
                if inner == "*" {
                    steps.push(Step::AnyIndex);
                } else if (inner.starts_with('\'') && inner.ends_with('\'')
                    || inner.starts_with('"') && inner.ends_with('"'))
                    && inner.len() >= 2
                {
                    steps.push(Step::Field(inner[1..inner.len() - 1].to_owned()));
                } else {
                    let n = inner
                        .parse::<i64>()
                        .map_err(|_| err(&format!("bad index [{inner}]")))?;
                    steps.push(Step::Index(n));
                }
                i = close + 1;
            }
            _ => return Err(err(&format!("unexpected {c:?} at {i}"))),
        }
    }
    if expect_name {
        return Err(err("ends with '.'"));
    }
    Ok(steps)
}

fn quoted(chars: &[char], start: usize) -> Option<(String, usize)> {
    let quote = chars[start];
    let end = chars[start + 1..].iter().position(|&c| c == quote)? + start + 1;
    Some((chars[start + 1..end].iter().collect(), end + 1))
}

/// The first value `steps` reach in `root`, if any.
pub fn first<'a>(root: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    let Some((step, rest)) = steps.split_first() else {
        return Some(root);
    };
    match (step, root) {
        (Step::Field(name), Value::Object(map)) => first(map.get(name)?, rest),
        (Step::AnyField, Value::Object(map)) => map.values().find_map(|v| first(v, rest)),
        (Step::Index(n), Value::Array(items)) => {
            let idx = if *n < 0 {
                items.len().checked_sub(n.unsigned_abs() as usize)?
            } else {
                *n as usize
            };
            first(items.get(idx)?, rest)
        }
        (Step::AnyIndex, Value::Array(items)) => items.iter().find_map(|v| first(v, rest)),
        _ => None,
    }
}

/// Resolves a criteria key against a context such as `{"trigger": payload}`.
///
/// # Errors
///
/// [`PathError`] when the key does not parse.
pub fn resolve<'a>(root: &'a Value, key: &str) -> Result<Option<&'a Value>, PathError> {
    Ok(first(root, &parse(key)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_resolve_like_jsonpath_rw() {
        let ctx = json!({"trigger": {
            "body": {"key1": "v1", "items": [{"name": "a"}, {"name": "b"}], "n": null},
            "headers": {"X-Custom-Header": "h", "plain": 1}
        }});
        let cases: &[(&str, Option<Value>)] = &[
            ("trigger.body.key1", Some(json!("v1"))),
            ("trigger.body.items[0].name", Some(json!("a"))),
            ("trigger.body.items[1].name", Some(json!("b"))),
            ("trigger.body.items[-1].name", Some(json!("b"))),
            ("trigger.body.items[*].name", Some(json!("a"))),
            ("trigger.headers['X-Custom-Header']", Some(json!("h"))),
            ("trigger.headers.'X-Custom-Header'", Some(json!("h"))),
            ("trigger.headers[\"X-Custom-Header\"]", Some(json!("h"))),
            ("trigger.headers.*", Some(json!("h"))),
            ("trigger.body.key1#second", Some(json!("v1"))),
            ("trigger.body.n", Some(Value::Null)),
            ("trigger.body.missing", None),
            ("trigger.body.items[5]", None),
            ("trigger.body.key1.deeper", None),
        ];
        for (key, expected) in cases {
            assert_eq!(resolve(&ctx, key).unwrap().cloned(), *expected, "{key}");
        }
    }

    #[test]
    fn bad_keys_are_errors() {
        for key in [
            "trigger.headers.X-Custom",
            "trigger..a",
            "trigger.",
            "trigger[x]",
            "trigger['a",
            "",
        ] {
            assert!(parse(key).is_err(), "{key}");
        }
    }
}
