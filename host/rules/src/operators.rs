//! Criteria operators with StackStorm's semantics (`st2common/operators.py`), including Python's
//! comparison rules: no string/number coercion, `True == 1`, type errors for mixed ordering.
//!
//! An operator either decides (`Ok(bool)`) or fails (`Err`): a bad regex, a comparison between
//! incompatible types, a string method on a non-string. A failure makes the criterion false and
//! is recorded as a failed enforcement; it never stops the engine.

use std::cmp::Ordering;

use serde_json::Value;

/// Why an operator could not decide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OperatorError(pub String);

/// A criteria operator (aliases resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Operator {
    Equals,
    NEquals,
    IEquals,
    Contains,
    NContains,
    IContains,
    INContains,
    StartsWith,
    IStartsWith,
    EndsWith,
    IEndsWith,
    LessThan,
    GreaterThan,
    MatchWildcard,
    MatchRegex,
    Regex,
    IRegex,
    TimeDiffLt,
    TimeDiffGt,
    Exists,
    NExists,
    Inside,
    NInside,
    Search,
}

/// Every operator name StackStorm accepts, with its aliases, in its documentation's order.
pub const NAMES: &[(&str, Operator)] = &[
    ("equals", Operator::Equals),
    ("eq", Operator::Equals),
    ("nequals", Operator::NEquals),
    ("neq", Operator::NEquals),
    ("iequals", Operator::IEquals),
    ("ieq", Operator::IEquals),
    ("contains", Operator::Contains),
    ("ncontains", Operator::NContains),
    ("icontains", Operator::IContains),
    ("incontains", Operator::INContains),
    ("startswith", Operator::StartsWith),
    ("istartswith", Operator::IStartsWith),
    ("endswith", Operator::EndsWith),
    ("iendswith", Operator::IEndsWith),
    ("lessthan", Operator::LessThan),
    ("lt", Operator::LessThan),
    ("greaterthan", Operator::GreaterThan),
    ("gt", Operator::GreaterThan),
    ("matchwildcard", Operator::MatchWildcard),
    ("matchregex", Operator::MatchRegex),
    ("regex", Operator::Regex),
    ("iregex", Operator::IRegex),
    ("timediff_lt", Operator::TimeDiffLt),
    ("td_lt", Operator::TimeDiffLt),
    ("timediff_gt", Operator::TimeDiffGt),
    ("td_gt", Operator::TimeDiffGt),
    ("exists", Operator::Exists),
    ("nexists", Operator::NExists),
    ("inside", Operator::Inside),
    ("in", Operator::Inside),
    ("ninside", Operator::NInside),
    ("nin", Operator::NInside),
    ("search", Operator::Search),
];

impl Operator {
    /// The operator for a name or alias (evaluation lower-cases, as StackStorm does).
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.to_ascii_lowercase();
        NAMES.iter().find(|(n, _)| *n == name).map(|(_, op)| *op)
    }

    /// Decides `value <op> pattern`. `value` is `None` when the key matched nothing (JSON
    /// `null` counts as nothing, as Python's `None`). `Search` is evaluated by
    /// [`crate::criteria`], not here.
    ///
    /// # Errors
    ///
    /// [`OperatorError`] when Python would raise.
    pub fn apply(self, value: Option<&Value>, pattern: &Value) -> Result<bool, OperatorError> {
        let value = value.filter(|v| !v.is_null());
        match self {
            Self::Exists => return Ok(value.is_some()),
            Self::NExists => return Ok(value.is_none()),
            Self::NEquals => return Ok(!py_eq(value.unwrap_or(&Value::Null), pattern)),
            _ => {}
        }
        // Most operators are false for a missing pattern.
        if pattern.is_null() {
            return Ok(false);
        }
        let v = value.unwrap_or(&Value::Null);
        match self {
            Self::Equals => Ok(py_eq(v, pattern)),
            Self::IEquals => Ok(lower(v)? == lower(pattern)?),
            Self::Contains => py_in(pattern, v),
            Self::NContains => py_in(pattern, v).map(|b| !b),
            Self::IContains => Ok(lower(v)?.contains(&lower(pattern)?)),
            Self::INContains => Ok(!lower(v)?.contains(&lower(pattern)?)),
            Self::StartsWith => Ok(text(v)?.starts_with(text(pattern)?)),
            Self::IStartsWith => Ok(lower(v)?.starts_with(&lower(pattern)?)),
            Self::EndsWith => Ok(text(v)?.ends_with(text(pattern)?)),
            Self::IEndsWith => Ok(lower(v)?.ends_with(&lower(pattern)?)),
            Self::LessThan => Ok(py_cmp(v, pattern)? == Ordering::Less),
            Self::GreaterThan => Ok(py_cmp(v, pattern)? == Ordering::Greater),
            Self::MatchWildcard => regex_search(&glob_to_regex(text(pattern)?), text(v)?, ""),
            Self::MatchRegex => {
                regex_search(&format!("\\A(?:{})", text(pattern)?), text(v)?, "(?s)")
            }
            Self::Regex => regex_search(text(pattern)?, text(v)?, ""),
            Self::IRegex => regex_search(text(pattern)?, text(v)?, "(?i)"),
            Self::TimeDiffLt => Ok(age_seconds(v)? < float(pattern)?),
            Self::TimeDiffGt => Ok(age_seconds(v)? > float(pattern)?),
            Self::Inside => py_in(v, pattern),
            Self::NInside => py_in(v, pattern).map(|b| !b),
            Self::Search => Err(OperatorError(
                "search is evaluated with its child criteria".into(),
            )),
            Self::Exists | Self::NExists | Self::NEquals => unreachable!("handled above"),
        }
    }
}

/// Python's name for the type of a JSON value (`int`, `str`, `dict`, ...), as its errors say.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

fn text(v: &Value) -> Result<&str, OperatorError> {
    v.as_str()
        .ok_or_else(|| OperatorError(format!("expected a string, got {}", type_name(v))))
}

fn lower(v: &Value) -> Result<String, OperatorError> {
    text(v).map(str::to_lowercase)
}

fn float(v: &Value) -> Result<f64, OperatorError> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| OperatorError("number out of range".into())),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| OperatorError(format!("could not convert string to float: {s:?}"))),
        Value::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
        other => Err(OperatorError(format!(
            "float() argument must be a string or a number, not {}",
            type_name(other)
        ))),
    }
}

/// A number as Python sees it; booleans are integers.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

/// Python's `==` on JSON values.
pub fn py_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| py_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| py_eq(v, w)))
        }
        _ => match (number(a), number(b)) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
    }
}

/// Python's ordering (`<`): numbers with numbers, strings with strings, lists element-wise.
fn py_cmp(a: &Value, b: &Value) -> Result<Ordering, OperatorError> {
    let unorderable = || {
        OperatorError(format!(
            "'<' not supported between instances of '{}' and '{}'",
            type_name(a),
            type_name(b)
        ))
    };
    match (a, b) {
        (Value::String(x), Value::String(y)) => Ok(x.chars().cmp(y.chars())),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                if !py_eq(p, q) {
                    return py_cmp(p, q);
                }
            }
            Ok(x.len().cmp(&y.len()))
        }
        _ => match (number(a), number(b)) {
            (Some(x), Some(y)) => x.partial_cmp(&y).ok_or_else(unorderable),
            _ => Err(unorderable()),
        },
    }
}

/// Python's `needle in haystack`: substring, list membership, dict key.
fn py_in(needle: &Value, haystack: &Value) -> Result<bool, OperatorError> {
    match haystack {
        Value::String(s) => match needle {
            Value::String(n) => Ok(s.contains(n.as_str())),
            other => Err(OperatorError(format!(
                "'in <string>' requires string as left operand, not {}",
                type_name(other)
            ))),
        },
        Value::Array(items) => Ok(items.iter().any(|i| py_eq(i, needle))),
        Value::Object(map) => match needle {
            Value::String(k) => Ok(map.contains_key(k)),
            _ => Ok(false),
        },
        other => Err(OperatorError(format!(
            "argument of type '{}' is not iterable",
            type_name(other)
        ))),
    }
}

fn regex_search(pattern: &str, haystack: &str, flags: &str) -> Result<bool, OperatorError> {
    let source = format!("{flags}{pattern}");
    let re =
        compiled(&source).map_err(|e| OperatorError(format!("invalid regex {pattern:?}: {e}")))?;
    re.is_match(haystack)
        .map_err(|e| OperatorError(format!("regex {pattern:?} failed: {e}")))
}

/// Compiled regexes, per thread: rules apply the same patterns to every trigger instance, and
/// compiling costs far more than matching. Bounded: cleared when it grows past 512 entries.
pub(crate) fn compiled(source: &str) -> Result<fancy_regex::Regex, fancy_regex::Error> {
    use std::cell::RefCell;
    use std::collections::HashMap;
    thread_local! {
        static CACHE: RefCell<HashMap<String, fancy_regex::Regex>> = RefCell::new(HashMap::new());
    }
    CACHE.with(|cache| {
        if let Some(re) = cache.borrow().get(source) {
            return Ok(re.clone());
        }
        let re = fancy_regex::Regex::new(source)?;
        let mut cache = cache.borrow_mut();
        if cache.len() >= 512 {
            cache.clear();
        }
        cache.insert(source.to_owned(), re.clone());
        Ok(re)
    })
}

/// `fnmatch.translate`: `*`, `?`, `[seq]`, `[!seq]`, anchored at both ends.
fn glob_to_regex(glob: &str) -> String {
    let chars: Vec<char> = glob.chars().collect();
    let mut out = String::from("\\A(?s:");
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            '[' => match chars[i + 1..]
                .iter()
                .position(|&c| c == ']')
                .map(|p| p + i + 1)
            {
                Some(close) if close > i + 1 => {
                    let mut class: String = chars[i + 1..close].iter().collect();
                    if let Some(rest) = class.strip_prefix('!') {
                        class = format!("^{rest}");
                    }
                    out.push('[');
                    out.push_str(&class.replace('\\', "\\\\"));
                    out.push(']');
                    i = close;
                }
                _ => out.push_str("\\["),
            },
            c => out.push_str(&fancy_regex::escape(&c.to_string())),
        }
        i += 1;
    }
    out.push_str(")\\z");
    out
}

/// Seconds from `value` (a timestamp; naive means UTC) to now.
fn age_seconds(value: &Value) -> Result<f64, OperatorError> {
    let s = text(value)?.trim();
    let parsed = chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .or_else(|_| {
            [
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%d %H:%M:%S%.f",
                "%Y-%m-%dT%H:%M:%S",
                "%Y-%m-%d %H:%M:%S",
            ]
            .iter()
            .find_map(|f| chrono::NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), f).ok())
            .map(|n| n.and_utc())
            .ok_or(())
        })
        .map_err(|()| OperatorError(format!("unknown string format: {s:?}")))?;
    Ok((chrono::Utc::now() - parsed).num_milliseconds() as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// (operator, value, pattern, expected): `None` value means "missing key"; `Err` expected is
    /// written as `None`.
    #[allow(clippy::type_complexity)]
    fn table() -> Vec<(&'static str, Option<Value>, Value, Option<bool>)> {
        let recent = (chrono::Utc::now() - chrono::Duration::seconds(30)).to_rfc3339();
        let old = "2020-01-01T00:00:00Z".to_owned();
        vec![
            ("equals", Some(json!("a")), json!("a"), Some(true)),
            ("eq", Some(json!(1)), json!(1.0), Some(true)),
            ("equals", Some(json!(1)), json!("1"), Some(false)),
            ("equals", Some(json!(true)), json!(1), Some(true)),
            (
                "equals",
                Some(json!({"a": [1, 2]})),
                json!({"a": [1, 2]}),
                Some(true),
            ),
            ("equals", None, json!("a"), Some(false)),
            ("equals", Some(json!("a")), Value::Null, Some(false)),
            ("nequals", Some(json!("a")), json!("b"), Some(true)),
            ("neq", Some(json!("None")), Value::Null, Some(true)),
            ("nequals", None, Value::Null, Some(false)),
            ("iequals", Some(json!("AbC")), json!("aBc"), Some(true)),
            ("ieq", Some(json!(1)), json!("1"), None),
            (
                "contains",
                Some(json!("hello world")),
                json!("lo w"),
                Some(true),
            ),
            ("contains", Some(json!(["a", "b"])), json!("b"), Some(true)),
            ("contains", Some(json!({"k": 1})), json!("k"), Some(true)),
            ("contains", Some(json!(5)), json!("5"), None),
            ("ncontains", Some(json!("hello")), json!("z"), Some(true)),
            ("icontains", Some(json!("HeLLo")), json!("ell"), Some(true)),
            (
                "incontains",
                Some(json!("HeLLo")),
                json!("ELL"),
                Some(false),
            ),
            (
                "startswith",
                Some(json!("refs/heads/main")),
                json!("refs/heads/"),
                Some(true),
            ),
            (
                "istartswith",
                Some(json!("Refs/Heads")),
                json!("refs"),
                Some(true),
            ),
            ("endswith", Some(json!("file.py")), json!(".py"), Some(true)),
            (
                "iendswith",
                Some(json!("FILE.PY")),
                json!(".py"),
                Some(true),
            ),
            ("startswith", Some(json!(12)), json!("1"), None),
            ("lessthan", Some(json!(1)), json!(2), Some(true)),
            ("lt", Some(json!("a")), json!("b"), Some(true)),
            ("lessthan", Some(json!(1)), json!("2"), None),
            ("greaterthan", Some(json!(3.5)), json!(3), Some(true)),
            ("gt", None, json!(3), None),
            (
                "matchwildcard",
                Some(json!("server-01.prod")),
                json!("server-??.p*"),
                Some(true),
            ),
            (
                "matchwildcard",
                Some(json!("a.b")),
                json!("a?c"),
                Some(false),
            ),
            (
                "matchwildcard",
                Some(json!("x1")),
                json!("x[0-9]"),
                Some(true),
            ),
            (
                "matchwildcard",
                Some(json!("x1")),
                json!("x[!0-9]"),
                Some(false),
            ),
            (
                "matchregex",
                Some(json!("abc\ndef")),
                json!("abc.def"),
                Some(true),
            ),
            ("matchregex", Some(json!("xabc")), json!("abc"), Some(false)),
            ("regex", Some(json!("xabc")), json!("ab+c"), Some(true)),
            ("regex", Some(json!("x")), json!("(unclosed"), None),
            ("iregex", Some(json!("XABC")), json!("abc"), Some(true)),
            (
                "timediff_lt",
                Some(json!(recent.clone())),
                json!(60),
                Some(true),
            ),
            ("td_lt", Some(json!(old.clone())), json!("60"), Some(false)),
            ("timediff_gt", Some(json!(old)), json!(60), Some(true)),
            ("td_gt", Some(json!("yesterday")), json!(60), None),
            ("exists", Some(json!(0)), json!("ignored"), Some(true)),
            ("exists", Some(Value::Null), json!("ignored"), Some(false)),
            ("exists", None, json!("ignored"), Some(false)),
            ("nexists", None, json!("ignored"), Some(true)),
            ("nexists", Some(json!("")), json!("ignored"), Some(false)),
            ("inside", Some(json!("b")), json!(["a", "b"]), Some(true)),
            ("in", Some(json!("ell")), json!("hello"), Some(true)),
            ("ninside", Some(json!("z")), json!(["a"]), Some(true)),
            ("nin", Some(json!(1)), json!(5), None),
        ]
    }

    #[test]
    fn every_operator_and_alias_behaves_as_in_stackstorm() {
        for (name, value, pattern, expected) in table() {
            let op = Operator::from_name(name).unwrap_or_else(|| panic!("{name} is an operator"));
            let got = op.apply(value.as_ref(), &pattern);
            match expected {
                Some(b) => assert_eq!(got, Ok(b), "{name} {value:?} {pattern}"),
                None => assert!(
                    got.is_err(),
                    "{name} {value:?} {pattern} should fail, got {got:?}"
                ),
            }
        }
    }

    #[test]
    fn every_name_is_covered_by_the_table() {
        let tested: Vec<&str> = table().iter().map(|t| t.0).collect();
        for (name, _) in NAMES {
            assert!(
                *name == "search" || tested.contains(name),
                "no case for {name}"
            );
        }
        assert_eq!(
            Operator::from_name("EQUALS"),
            Some(Operator::Equals),
            "evaluation lower-cases"
        );
        assert_eq!(
            Operator::from_name("timediff_nlt"),
            None,
            "not an operator in 3.9"
        );
    }
}
