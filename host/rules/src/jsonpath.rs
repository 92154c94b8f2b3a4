//! Criteria keys: the subset of jsonpath-rw 1.4 that StackStorm rules use.
//!
//! - Dotted names: `trigger.body.key1`, `trigger.headers_lower.x-github-event`. Names match
//!   `[a-zA-Z_@][a-zA-Z0-9_@\-]*` (jsonpath-rw's `ID` token).
//! - Quoted names: `trigger.headers['X-Custom-Header']`, `trigger.headers.'X-Custom-Header'`,
//!   double quotes too.
//! - Indexes and wildcards: `trigger.body.items[0].name`, `items[*]`, `body.*`. Only the first
//!   match counts. `[*]` on an object, a string or an integer finds that value itself
//!   (jsonpath-rw wraps it in a one-element list).
//! - The root `$` (`$.foo.bar`) and descendants (`$..id`, `a..b`), which `jsonpath_query` uses.
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
    /// The value itself and every value inside it, in pre-order (`..`).
    Descendants,
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
    // `$` is the root, which every path starts from anyway.
    if chars[0] == '$' {
        i = 1;
        expect_name = false;
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
                    && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | '@' | '-'))
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
            '.' if chars.get(i + 1) == Some(&'.') => {
                steps.push(Step::Descendants);
                expect_name = true;
                i += 2;
            }
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

/// Most values a search visits. Each `..` walks the whole subtree below every place the
/// path reached, so `k` of them cost about `n^k` visits on a value of `n` nodes:
/// `$..*..*..*..*..x` on a payload nested 60 deep took 1.5 s (debug build), and more `..`s
/// run for hours. About 10-50 ms of work.
pub const MAX_VISITS: usize = 1_000_000;

/// Why a search stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    /// The matches are larger than the bytes allowed.
    Bytes,
    /// The search visited more than [`MAX_VISITS`] values.
    Visits,
}

impl Exceeded {
    /// The reason, for an error message.
    pub fn reason(self) -> String {
        match self {
            Self::Bytes => "its matches are too large".into(),
            Self::Visits => format!("the search visits more than {MAX_VISITS} values"),
        }
    }
}

/// The first value `steps` reach in `root`, if any.
///
/// # Errors
///
/// [`Exceeded::Visits`] when finding it visits too many values.
pub fn first(root: &Value, steps: &[Step]) -> Result<Option<Value>, Exceeded> {
    let mut found = Vec::new();
    let mut budget = Budget::first();
    find(root, steps, &mut budget, &mut found);
    match budget.exceeded {
        Some(why) => Err(why),
        None => Ok(found.pop()),
    }
}

/// Every value `steps` reach in `root`, in jsonpath-rw's order, up to about `max_bytes` of
/// values (as JSON).
///
/// # Errors
///
/// [`Exceeded`] when they are more than that, or the search visits too many values.
pub fn all(root: &Value, steps: &[Step], max_bytes: usize) -> Result<Vec<Value>, Exceeded> {
    let mut found = Vec::new();
    let mut budget = Budget {
        bytes: max_bytes,
        visits: MAX_VISITS,
        first_only: false,
        exceeded: None,
    };
    find(root, steps, &mut budget, &mut found);
    match budget.exceeded {
        Some(why) => Err(why),
        None => Ok(found),
    }
}

/// How much more a search may find.
struct Budget {
    /// Bytes of values still allowed.
    bytes: usize,
    /// Values that may still be visited.
    visits: usize,
    /// Stop at the first match.
    first_only: bool,
    /// Ran out of bytes or visits.
    exceeded: Option<Exceeded>,
}

impl Budget {
    fn first() -> Self {
        Self {
            bytes: usize::MAX,
            visits: MAX_VISITS,
            first_only: true,
            exceeded: None,
        }
    }

    fn done(&self, found: &[Value]) -> bool {
        self.exceeded.is_some() || (self.first_only && !found.is_empty())
    }

    /// Takes a match, if its size (walked no further than the bytes left) fits.
    fn take(&mut self, value: &Value, found: &mut Vec<Value>) {
        if !self.first_only {
            let size = approx_size(value, self.bytes);
            if size > self.bytes {
                self.exceeded = Some(Exceeded::Bytes);
                return;
            }
            self.bytes -= size;
        }
        found.push(value.clone());
    }
}

/// The size of `value` as JSON, roughly, walking no further than `cap` bytes.
fn approx_size(value: &Value, cap: usize) -> usize {
    let mut size = 0usize;
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        size += match v {
            Value::String(s) => s.len() + 2,
            Value::Array(items) => {
                stack.extend(items);
                2 + items.len()
            }
            Value::Object(map) => {
                for (k, item) in map {
                    size += k.len() + 4;
                    stack.push(item);
                }
                2
            }
            _ => 8,
        };
        if size > cap {
            return size;
        }
    }
    size
}

fn find(root: &Value, steps: &[Step], budget: &mut Budget, found: &mut Vec<Value>) {
    if budget.done(found) {
        return;
    }
    let Some(visits) = budget.visits.checked_sub(1) else {
        budget.exceeded = Some(Exceeded::Visits);
        return;
    };
    budget.visits = visits;
    let Some((step, rest)) = steps.split_first() else {
        budget.take(root, found);
        return;
    };
    match (step, root) {
        (Step::Field(name), Value::Object(map)) => {
            if let Some(v) = map.get(name) {
                find(v, rest, budget, found);
            }
        }
        (Step::AnyField, Value::Object(map)) => {
            for v in map.values() {
                find(v, rest, budget, found);
            }
        }
        (Step::Index(n), Value::Array(items)) => {
            if let Some(v) = index(items.len(), *n).and_then(|i| items.get(i)) {
                find(v, rest, budget, found);
            }
        }
        // jsonpath-rw indexes a string's characters.
        (Step::Index(n), Value::String(s)) => {
            let chars: Vec<char> = s.chars().collect();
            if let Some(c) = index(chars.len(), *n).and_then(|i| chars.get(i)) {
                find(&Value::String(c.to_string()), rest, budget, found);
            }
        }
        (Step::AnyIndex, Value::Array(items)) => {
            for v in items {
                find(v, rest, budget, found);
            }
        }
        // jsonpath-rw's slice wraps a dict, an int (a bool is one) or a string in a list.
        (Step::AnyIndex, Value::Object(_) | Value::String(_) | Value::Bool(_)) => {
            find(root, rest, budget, found);
        }
        (Step::AnyIndex, Value::Number(n)) if n.is_i64() || n.is_u64() => {
            find(root, rest, budget, found);
        }
        (Step::Descendants, _) => {
            find(root, rest, budget, found);
            match root {
                Value::Object(map) => {
                    for v in map.values() {
                        find(v, steps, budget, found);
                    }
                }
                Value::Array(items) => {
                    for v in items {
                        find(v, steps, budget, found);
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
}

/// A Python index (negative counts from the end) into a sequence of `len` items.
fn index(len: usize, n: i64) -> Option<usize> {
    if n < 0 {
        len.checked_sub(usize::try_from(n.unsigned_abs()).ok()?)
    } else {
        usize::try_from(n).ok()
    }
}

/// Resolves a criteria key against a context such as `{"trigger": payload}`.
///
/// # Errors
///
/// [`PathError`] when the key does not parse.
pub fn resolve(root: &Value, key: &str) -> Result<Option<Value>, PathError> {
    let steps = parse(key)?;
    first(root, &steps).map_err(|why| PathError {
        key: key.to_owned(),
        reason: why.reason(),
    })
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
            // A hyphen inside a dotted name, as jsonpath-rw's ID token allows
            // (`trigger.headers_lower.x-github-event` in StackStorm's GitHub examples).
            ("trigger.headers.X-Custom-Header", Some(json!("h"))),
            // `[*]` on a scalar finds the scalar (jsonpath-rw wraps it in a list).
            ("trigger.body.key1[*]", Some(json!("v1"))),
            ("trigger.headers.plain[*]", Some(json!(1))),
            ("trigger.body[*].key1", Some(json!("v1"))),
            ("trigger.body.key1[0]", Some(json!("v"))),
            ("$.trigger.body.key1", Some(json!("v1"))),
            ("trigger..name", Some(json!("a"))),
        ];
        for (key, expected) in cases {
            assert_eq!(resolve(&ctx, key).unwrap(), *expected, "{key}");
        }
    }

    #[test]
    fn bad_keys_are_errors() {
        for key in [
            "trigger.-a",
            "trigger...a",
            "trigger.",
            "trigger[x]",
            "trigger['a",
            "",
        ] {
            assert!(parse(key).is_err(), "{key}");
        }
    }
}

#[cfg(test)]
mod query_tests {
    use super::*;
    use serde_json::json;

    fn query(value: &Value, path: &str) -> Result<Vec<Value>, Exceeded> {
        all(value, &parse(path).unwrap(), 1 << 20)
    }

    /// jsonpath-rw 1.4.0 behaviour, as `jsonpath_query` sees it (docs/st2-jinja-filters.md §2.6).
    #[test]
    fn all_matches_in_jsonpath_rw_order() {
        // The upstream vectors (`people[*].first`, `$.foo.bar`, no match) are in
        // `filters::data`'s tests of `jsonpath_query`.
        let tree = json!({"id": 1, "c": [{"id": 2}, {"d": {"id": 3}}]});
        assert_eq!(
            query(&tree, "$..id").unwrap(),
            [json!(1), json!(2), json!(3)]
        );
        assert_eq!(query(&json!({"a": [1, 2]}), "a[-1]").unwrap(), [json!(2)]);
        assert_eq!(
            query(&json!({"a": {"k": 1}}), "a[*]").unwrap(),
            [json!({"k": 1})]
        );
        assert_eq!(
            query(&json!({"a": [{"b": 1}, {"b": 2}]}), "a.b").unwrap(),
            Vec::<Value>::new()
        );
        assert_eq!(query(&json!({"a": 1}), "$").unwrap(), [json!({"a": 1})]);
        // Too many bytes of matches.
        let big = json!({"a": ["x".repeat(100), "y".repeat(100)]});
        assert_eq!(
            all(&big, &parse("a[*]").unwrap(), 150),
            Err(Exceeded::Bytes)
        );
    }

    /// Each `..` walks the subtree below every place reached so far: on a value nested 60
    /// deep, `$..*..*..*..*..zz` took 1.5 s (debug build) before the search was bounded, and
    /// more `..`s would run for hours. Criteria keys (`resolve`) stop the same way, with an
    /// error rather than "not found".
    #[test]
    fn descendant_searches_are_bounded() {
        let mut deep = json!(1);
        for _ in 0..60 {
            deep = json!({"a": deep, "b": [1, 2]});
        }
        let path = "$..*..*..*..*..*..zz";
        assert_eq!(query(&deep, path), Err(Exceeded::Visits));
        let error = resolve(&json!({"trigger": deep}), "trigger..*..*..*..*..*..zz").unwrap_err();
        assert!(error.reason.contains("visits more than"), "{error}");
        // One `..` over the same value is well within the bound.
        assert_eq!(query(&deep, "$..zz"), Ok(vec![]));
    }
}
