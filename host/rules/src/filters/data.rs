//! `st2common/expressions/functions/data.py`: JSON, YAML, jsonpath and `use_none`
//! (`docs/st2-jinja-filters.md` §2).

use std::fmt::Write as _;

use minijinja::value::{Kwargs, Serde, ValueKind};
use minijinja::{Error, Value};

use super::error;
use crate::python::{self, type_name};
use crate::sandbox::{Capped, MAX_VALUE_BYTES, too_large};

/// What `use_none` turns `None` into; typed parameter casts turn it back into `null`.
pub(crate) const NONE_MAGIC_VALUE: &str = "%*****__%NONE%__*****%";

/// `json.dumps` options.
struct Dumps {
    /// Text per nesting level (`indent=2` is two spaces); `None` for one line.
    indent: Option<String>,
    sort_keys: bool,
    item_separator: String,
    key_separator: String,
}

impl Dumps {
    /// `json.dumps(value)`'s defaults: `(", ", ": ")`.
    fn python_default() -> Self {
        Self {
            indent: None,
            sort_keys: false,
            item_separator: ", ".into(),
            key_separator: ": ".into(),
        }
    }

    fn dump(&self, value: &Value) -> Result<String, Error> {
        let mut out = Capped::new(MAX_VALUE_BYTES);
        self.write(&mut out, value, 0)?;
        Ok(out.buf)
    }

    fn newline(&self, out: &mut Capped, level: usize) -> Result<(), Error> {
        if let Some(indent) = &self.indent {
            out.write_char('\n').map_err(|_| too_large())?;
            for _ in 0..level {
                out.write_str(indent).map_err(|_| too_large())?;
            }
        }
        Ok(())
    }

    fn write(&self, out: &mut Capped, value: &Value, level: usize) -> Result<(), Error> {
        let w = |out: &mut Capped, s: &str| out.write_str(s).map_err(|_| too_large());
        // With an indent, the item separator ends a line: Python drops nothing, so `","`.
        match value.kind() {
            ValueKind::None => w(out, "null"),
            ValueKind::Bool => w(out, if value.is_true() { "true" } else { "false" }),
            ValueKind::Number if value.is_integer() => w(out, &value.to_string()),
            ValueKind::Number => {
                let f = f64::try_from(value.clone())?;
                let text = if f.is_nan() {
                    "NaN".to_owned()
                } else if f.is_infinite() {
                    if f > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
                } else {
                    python::float_repr(f)
                };
                w(out, &text)
            }
            ValueKind::String => write_json_string(out, value.as_str().unwrap_or_default()),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = value.try_iter()?.collect();
                if items.is_empty() {
                    return w(out, "[]");
                }
                w(out, "[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        w(out, &self.item_separator)?;
                    }
                    self.newline(out, level + 1)?;
                    self.write(out, item, level + 1)?;
                }
                self.newline(out, level)?;
                w(out, "]")
            }
            ValueKind::Map => {
                let object = value.as_object().ok_or_else(|| not_serializable(value))?;
                let mut pairs: Vec<(Value, Value)> =
                    object.try_iter_pairs().into_iter().flatten().collect();
                if pairs.is_empty() {
                    return w(out, "{}");
                }
                if self.sort_keys {
                    if pairs.iter().any(|(k, _)| k.kind() != pairs[0].0.kind()) {
                        return Err(error(
                            "'<' not supported between instances of different key types",
                        ));
                    }
                    pairs.sort_by(|(a, _), (b, _)| a.cmp(b));
                }
                w(out, "{")?;
                for (i, (key, item)) in pairs.iter().enumerate() {
                    if i > 0 {
                        w(out, &self.item_separator)?;
                    }
                    self.newline(out, level + 1)?;
                    let key = match key.kind() {
                        ValueKind::String => key.as_str().unwrap_or_default().to_owned(),
                        ValueKind::None => "null".into(),
                        ValueKind::Bool => if key.is_true() { "true" } else { "false" }.into(),
                        ValueKind::Number => python::str_of(key)?,
                        _ => {
                            return Err(error(format!(
                                "keys must be str, int, float, bool or None, not {}",
                                type_name(key)
                            )));
                        }
                    };
                    write_json_string(out, &key)?;
                    w(out, &self.key_separator)?;
                    self.write(out, item, level + 1)?;
                }
                self.newline(out, level)?;
                w(out, "}")
            }
            // Datastore lookups and other plain objects: their text.
            ValueKind::Plain => write_json_string(out, &value.to_string()),
            _ => Err(not_serializable(value)),
        }
    }
}

fn not_serializable(value: &Value) -> Error {
    error(format!(
        "Object of type {} is not JSON serializable",
        type_name(value)
    ))
}

/// A JSON string with `ensure_ascii`: everything outside printable ASCII is `\uXXXX`
/// (surrogate pairs beyond the BMP), with the short escapes where JSON has them.
fn write_json_string(out: &mut Capped, s: &str) -> Result<(), Error> {
    let mut write = || -> std::fmt::Result {
        out.write_char('"')?;
        for c in s.chars() {
            match c {
                '"' => out.write_str("\\\"")?,
                '\\' => out.write_str("\\\\")?,
                '\n' => out.write_str("\\n")?,
                '\r' => out.write_str("\\r")?,
                '\t' => out.write_str("\\t")?,
                '\u{8}' => out.write_str("\\b")?,
                '\u{c}' => out.write_str("\\f")?,
                ' '..='~' => out.write_char(c)?,
                c => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        write!(out, "\\u{unit:04x}")?;
                    }
                }
            }
        }
        out.write_char('"')
    };
    write().map_err(|_| too_large())
}

/// `to_json_string(value, indent=None, sort_keys=False, separators=(",", ": "))`: the stdlib
/// `json.dumps` with its item separator `","` (no space).
pub(crate) fn to_json_string(
    value: Value,
    indent: Option<Value>,
    sort_keys: Option<Value>,
    separators: Option<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let indent = indent.or(kwargs.get::<Option<Value>>("indent")?);
    let sort_keys = sort_keys.or(kwargs.get::<Option<Value>>("sort_keys")?);
    let separators = separators.or(kwargs.get::<Option<Value>>("separators")?);
    kwargs.assert_all_used()?;
    let indent = match indent.filter(|i| !i.is_none()) {
        None => None,
        Some(i) if i.kind() == ValueKind::String => Some(i.as_str().unwrap_or_default().to_owned()),
        Some(i) => {
            let n = i
                .as_i64()
                .filter(|_| i.is_integer())
                .ok_or_else(|| error("indent must be an integer or a string"))?;
            let n = usize::try_from(n.max(0)).unwrap_or(0);
            if n > 64 {
                return Err(error("indent larger than 64"));
            }
            Some(" ".repeat(n))
        }
    };
    let (item_separator, key_separator) = match separators.filter(|s| !s.is_none()) {
        None => (",".to_owned(), ": ".to_owned()),
        Some(s) => {
            let parts: Vec<Value> = s.try_iter()?.collect();
            match parts.as_slice() {
                [item, key] if item.as_str().is_some() && key.as_str().is_some() => (
                    item.as_str().unwrap_or_default().to_owned(),
                    key.as_str().unwrap_or_default().to_owned(),
                ),
                _ => return Err(error("separators must be a pair of strings")),
            }
        }
    };
    let dumps = Dumps {
        indent,
        sort_keys: sort_keys.is_some_and(|s| s.is_true()),
        item_separator,
        key_separator,
    };
    dumps.dump(&value).map(Value::from)
}

/// `to_complex(value)`: `json.dumps(value)` with Python's default separators. Criteria
/// patterns use it (§4).
pub(crate) fn to_complex(value: Value) -> Result<Value, Error> {
    Dumps::python_default().dump(&value).map(Value::from)
}

/// `json_escape(value)`: `json.dumps(value).strip('"')` (every leading and trailing `"`).
pub(crate) fn json_escape(value: Value) -> Result<Value, Error> {
    let dumped = Dumps::python_default().dump(&value)?;
    Ok(Value::from(dumped.trim_matches('"')))
}

/// `from_json_string(value)`: `str(value)` parsed as strict JSON.
pub(crate) fn from_json_string(value: Value) -> Result<Value, Error> {
    let text = python::str_of(&value)?;
    let parsed: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| error(format!("JSONDecodeError: {e}")))?;
    Ok(Value::from(Serde(&parsed)))
}

/// `from_yaml_string(value)`: `str(value)` loaded as YAML (`""` is `None`).
pub(crate) fn from_yaml_string(value: Value) -> Result<Value, Error> {
    let text = python::str_of(&value)?;
    if text.trim().is_empty() {
        return Ok(Value::from(()));
    }
    let parsed: yaml_serde::Value =
        yaml_serde::from_str(&text).map_err(|e| error(format!("YAMLError: {e}")))?;
    Ok(Value::from(Serde(&parsed)))
}

/// `to_yaml_string(value, indent=None, allow_unicode=True)`: block style, keys sorted (PyYAML's
/// `safe_dump` defaults). The indent and `allow_unicode` arguments are accepted; the output
/// always uses two spaces and raw Unicode.
pub(crate) fn to_yaml_string(
    value: Value,
    _indent: Option<Value>,
    _allow_unicode: Option<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let _ = kwargs.get::<Option<Value>>("indent")?;
    let _ = kwargs.get::<Option<Value>>("allow_unicode")?;
    kwargs.assert_all_used()?;
    if value.is_undefined() {
        return Err(error(format!(
            "cannot represent an object: {}",
            type_name(&value)
        )));
    }
    let json = serde_json::to_value(&value).map_err(|e| error(e.to_string()))?;
    // Written into a capped buffer: block style indents every line by its depth, so a value
    // well within the cap (300,000 items 120 deep, 1.2 MB) made 75 MB of YAML before its size
    // was checked.
    let mut out = CappedBytes::default();
    match yaml_serde::to_writer(&mut out, &sorted(json)) {
        Ok(()) => {}
        Err(_) if out.full => return Err(too_large()),
        Err(e) => return Err(error(e.to_string())),
    }
    let text = String::from_utf8(out.bytes).map_err(|e| error(e.to_string()))?;
    Ok(Value::from(text))
}

/// Bytes up to [`MAX_VALUE_BYTES`]; a write past it fails and sets `full`.
#[derive(Default)]
struct CappedBytes {
    bytes: Vec<u8>,
    full: bool,
}

impl std::io::Write for CappedBytes {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len().saturating_add(buf.len()) > MAX_VALUE_BYTES {
            self.full = true;
            return Err(std::io::Error::other("too large"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `value` with every mapping's keys sorted.
fn sorted(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut pairs: Vec<(String, serde_json::Value)> = map.into_iter().collect();
            pairs.sort_by(|(a, _), (b, _)| a.cmp(b));
            serde_json::Value::Object(pairs.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sorted).collect())
        }
        other => other,
    }
}

/// `jsonpath_query(value, query)`: every match (jsonpath-rw's dialect), or `None` when nothing
/// matched.
pub(crate) fn jsonpath_query(value: Value, query: String) -> Result<Value, Error> {
    let steps = crate::jsonpath::parse(&query).map_err(|e| error(e.reason))?;
    let json = serde_json::to_value(&value).map_err(|e| error(e.to_string()))?;
    let matches = match crate::jsonpath::all(&json, &steps, MAX_VALUE_BYTES) {
        Ok(matches) => matches,
        Err(crate::jsonpath::Exceeded::Bytes) => return Err(too_large()),
        Err(why) => return Err(error(format!("jsonpath_query: {}", why.reason()))),
    };
    if matches.is_empty() {
        return Ok(Value::from(()));
    }
    Ok(Value::from(Serde(&matches)))
}

/// `use_none(value)`: `None` becomes [`NONE_MAGIC_VALUE`].
pub(crate) fn use_none(value: Value) -> Value {
    if value.is_none() {
        Value::from(NONE_MAGIC_VALUE)
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::filters::test_support::{ok, render};

    /// `st2common/tests/unit/test_jinja_render_data_filters.py`.
    #[test]
    fn upstream_data_filter_tests() {
        let obj = json!({"a": "b", "c": {"d": "e", "f": 1, "g": true}});
        assert_eq!(
            ok(
                "{{k1 | from_json_string}}",
                json!({"k1": r#"{"a": "b", "c": {"d": "e", "f": 1, "g": true}}"#})
            ),
            "{'a': 'b', 'c': {'d': 'e', 'f': 1, 'g': True}}"
        );
        assert_eq!(
            ok(
                "{{ st2kv.system.a | from_json_string}}",
                json!({"st2kv": {"system": {"a": r#"["a", "b", "c"]"#}}})
            ),
            "['a', 'b', 'c']"
        );
        assert_eq!(
            ok(
                "{{k1 | from_yaml_string}}",
                json!({"k1": "---\na: b\nc:\n  d: e\n  f: 1\n  g: true\n"})
            ),
            "{'a': 'b', 'c': {'d': 'e', 'f': 1, 'g': True}}"
        );
        assert_eq!(
            ok(
                "{{ st2kv.system.b | from_yaml_string }}",
                json!({"st2kv": {"system": {"b": "---\n- a\n- b\n- c\n"}}})
            ),
            "['a', 'b', 'c']"
        );
        assert_eq!(
            ok("{{k1 | to_json_string}}", json!({"k1": obj})),
            r#"{"a": "b","c": {"d": "e","f": 1,"g": true}}"#
        );
        assert_eq!(
            ok("{{k1 | to_yaml_string}}", json!({"k1": obj})),
            "a: b\nc:\n  d: e\n  f: 1\n  g: true\n"
        );
    }

    /// Edge cases verified against StackStorm's libraries (docs/st2-jinja-filters.md §2.3-2.8)
    /// and the orquesta integration test `test_wiring_functions.py::test_data_functions_in_jinja`.
    #[test]
    fn data_filter_edges() {
        let ctx = json!({"d": {"b": 1, "a": [1, 2.5, null, true], "u": "é☃"}, "s": {"b": 1, "a": [1, 2]}});
        assert_eq!(
            ok("{{ d | to_json_string }}", ctx.clone()),
            r#"{"b": 1,"a": [1,2.5,null,true],"u": "\u00e9\u2603"}"#
        );
        assert_eq!(
            ok("{{ s | to_json_string(indent=2) }}", ctx.clone()),
            "{\n  \"b\": 1,\n  \"a\": [\n    1,\n    2\n  ]\n}"
        );
        assert_eq!(
            ok("{{ s | to_json_string(2, True) }}", ctx.clone()),
            "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": 1\n}"
        );
        assert_eq!(
            ok(
                "{{ s | to_json_string(separators=[',', ':']) }}",
                ctx.clone()
            ),
            r#"{"b":1,"a":[1,2]}"#
        );
        assert_eq!(
            ok("{{ s | to_complex }}", ctx.clone()),
            r#"{"b": 1, "a": [1, 2]}"#
        );
        assert_eq!(
            ok(
                "{{ '{\"foo\": {\"bar\": \"foobar\"}}' | from_json_string | to_yaml_string | from_yaml_string | to_json_string }}",
                json!({})
            ),
            r#"{"foo": {"bar": "foobar"}}"#
        );
        assert_eq!(
            ok(
                "{{ l | to_yaml_string }}",
                json!({"l": [{"a": 1, "b": 2}, {"x": 3, "y": 4}]})
            ),
            "- a: 1\n  b: 2\n- x: 3\n  y: 4\n"
        );
        // Strings that would load as another type are quoted; top-level scalars have no `...`.
        assert_eq!(
            ok(
                "{{ {'s': 'true', 'n': '123', 'e': ''} | to_yaml_string }}",
                json!({})
            ),
            "e: ''\nn: '123'\ns: 'true'\n"
        );
        assert_eq!(ok("{{ 'foo' | to_yaml_string }}", json!({})), "foo\n");
        assert_eq!(ok("{{ [] | to_yaml_string }}", json!({})), "[]\n");
        assert!(render("{{ 'a: [1' | from_yaml_string }}", json!({})).is_err());
        assert_eq!(
            ok("{{ x | use_none }}", json!({"x": null})),
            "%*****__%NONE%__*****%"
        );
        assert_eq!(ok("{{ x | use_none }}", json!({"x": "foobar"})), "foobar");
        assert_eq!(ok("{{ x | use_none }}", json!({"x": 0})), "0");
        assert!(render("{{ 'not json' | from_json_string }}", json!({})).is_err());
        assert!(render("{{ missing | to_json_string }}", json!({})).is_err());
    }

    /// `st2common/tests/unit/test_jinja_render_json_escape_filters.py`.
    #[test]
    fn upstream_json_escape_tests() {
        for (input, expected) in [
            ("foo \"\"\" bar", r#"foo \"\"\" bar"#),
            (r"foo \ bar", r"foo \\ bar"),
            ("foo \u{8} bar", r"foo \b bar"),
            ("foo \u{c} bar", r"foo \f bar"),
            ("foo \n bar", r"foo \n bar"),
            ("foo \r bar", r"foo \r bar"),
            ("foo \t bar", r"foo \t bar"),
            ("ends with quote\"", r"ends with quote\"),
            ("é☃\u{7f}\u{1}/𝄞", r"\u00e9\u2603\u007f\u0001/\ud834\udd1e"),
        ] {
            assert_eq!(
                ok("{{ test_str | json_escape }}", json!({"test_str": input})),
                expected,
                "{input:?}"
            );
        }
        assert_eq!(
            ok("{{ x | json_escape }}", json!({"x": ["a", "b"]})),
            r#"["a", "b"]"#
        );
        assert_eq!(ok("{{ x | json_escape }}", json!({"x": null})), "null");
    }

    /// `st2common/tests/unit/test_jinja_render_jsonpath_query_filters.py`.
    #[test]
    fn upstream_jsonpath_query_tests() {
        let obj = json!({"people": [
            {"first": "James", "last": "d"},
            {"first": "Jacob", "last": "e"},
            {"first": "Jayden", "last": "f"},
            {"missing": "different"}
        ], "foo": {"bar": "baz"}});
        assert_eq!(
            ok(
                r#"{{ obj | jsonpath_query("people[*].first") }}"#,
                json!({"obj": obj})
            ),
            "['James', 'Jacob', 'Jayden']"
        );
        assert_eq!(
            ok(
                "{{ obj | jsonpath_query(query) }}",
                json!({"obj": obj, "query": "people[*].last"})
            ),
            "['d', 'e', 'f']"
        );
        assert_eq!(
            ok(
                "{{ obj | jsonpath_query(query) }}",
                json!({"obj": obj, "query": "query_returns_no_results"})
            ),
            "None"
        );
        assert_eq!(
            ok(
                r#"{{ obj | jsonpath_query("$.foo.bar") }}"#,
                json!({"obj": {"foo": {"bar": "foobar"}}})
            ),
            "['foobar']"
        );
    }

    /// YAML indents every line by its depth, so a small deep value makes a large text: it is
    /// written into a capped buffer, and refused when it reaches the cap (before, the whole
    /// 25 MB of this one were built first).
    #[test]
    fn to_yaml_string_stops_at_the_cap() {
        let mut deep = json!(vec![[1]; 100_000]);
        for _ in 0..120 {
            deep = json!([deep]);
        }
        let error = render("{{ x | to_yaml_string }}", json!({ "x": deep })).unwrap_err();
        assert!(error.contains("value larger than 8388608 bytes"), "{error}");
        let mut out = super::CappedBytes::default();
        let big = json!(vec!["x".repeat(1000); 10_000]);
        assert!(yaml_serde::to_writer(&mut out, &big).is_err());
        assert!(out.full && out.bytes.len() <= crate::sandbox::MAX_VALUE_BYTES);
        assert_eq!(
            ok("{{ {'b': [1], 'a': 2} | to_yaml_string }}", json!({})),
            "a: 2\nb:\n- 1\n"
        );
    }

    /// A query whose `..`s would walk the payload for hours fails the render instead.
    #[test]
    fn jsonpath_query_visits_are_bounded() {
        let mut deep = json!(1);
        for _ in 0..60 {
            deep = json!({"a": deep, "b": [1, 2]});
        }
        let error = render(
            r#"{{ obj | jsonpath_query("$..*..*..*..*..*..zz") }}"#,
            json!({ "obj": deep }),
        )
        .unwrap_err();
        assert!(
            error.contains("jsonpath_query: the search visits more than 1000000 values"),
            "{error}"
        );
    }
}
