//! `st2common/expressions/functions/regex.py`: Python `re` through `fancy-regex` (lookaround
//! and backreferences work), compiled with the `regex` criteria operator's limits and cache
//! (`docs/st2-jinja-filters.md` §3). Matching costs fuel by the time it takes (see
//! [`NANOS_PER_FUEL`]), at least one per match.

use std::time::Instant;

use fancy_regex::{Captures, Regex};
use minijinja::value::Tuple;
use minijinja::{Error, State, Value};

use super::error;
use crate::python;
use crate::sandbox::{Capped, MAX_VALUE_BYTES, too_large};

/// The pattern, compiled (`(?i)` for `ignorecase`); compiling costs fuel by its time, as
/// matching does (a pattern from the payload, or a new one on every turn of a loop, is compiled
/// each time: 8 ms for a pattern of 27 KB in a debug build).
fn compile(state: &State, pattern: &str, ignorecase: bool, anchored: bool) -> Result<Regex, Error> {
    let flags = if ignorecase { "(?i)" } else { "" };
    let source = if anchored {
        format!("{flags}\\A(?:{pattern})")
    } else {
        format!("{flags}{pattern}")
    };
    timed(state, || crate::operators::compiled(&source))?
        .map_err(|e| error(format!("re.error: {e}")))
}

/// Nanoseconds of matching that cost one fuel. One match may backtrack up to fancy-regex's
/// limit (a million steps, milliseconds of work) and still succeed, so a count of matches does
/// not bound the work: `regex_replace` over a payload of many such matches, or `regex_search`
/// in a loop, would run for minutes on one fuel per match. Charged by time, all the matching
/// of one render stops after about `FUEL * NANOS_PER_FUEL` (250 ms).
const NANOS_PER_FUEL: u128 = 250;

/// Runs one match (or one step of an iterator of matches) and charges its time.
fn timed<T>(state: &State, run: impl FnOnce() -> T) -> Result<T, Error> {
    let started = Instant::now();
    let result = run();
    let fuel = started.elapsed().as_nanos() / NANOS_PER_FUEL;
    state.consume_fuel(u64::try_from(fuel).unwrap_or(u64::MAX).max(1))?;
    Ok(result)
}

fn failed(e: &fancy_regex::Error) -> Error {
    error(format!("regex failed: {e}"))
}

/// `regex_match(value, pattern, ignorecase=False)`: `re.match`, anchored at the start only.
pub(crate) fn regex_match(
    state: &State,
    value: Value,
    pattern: String,
    ignorecase: Option<bool>,
) -> Result<bool, Error> {
    is_match(state, &value, &pattern, ignorecase, true)
}

/// `regex_search(value, pattern, ignorecase=False)`: `re.search`.
pub(crate) fn regex_search(
    state: &State,
    value: Value,
    pattern: String,
    ignorecase: Option<bool>,
) -> Result<bool, Error> {
    is_match(state, &value, &pattern, ignorecase, false)
}

fn is_match(
    state: &State,
    value: &Value,
    pattern: &str,
    ignorecase: Option<bool>,
    anchored: bool,
) -> Result<bool, Error> {
    let text = python::str_of(value)?;
    let re = compile(state, pattern, ignorecase.unwrap_or(false), anchored)?;
    timed(state, || re.is_match(&text))?.map_err(|e| failed(&e))
}

/// One piece of a Python replacement template.
enum Piece {
    Text(String),
    Group(usize),
}

/// Parses Python's replacement syntax: `\1`..`\99`, `\g<name>`, `\g<0>`, the escapes `\n`
/// `\t` `\r` `\f` `\v` `\a` `\b` `\\`; `$1` is literal.
fn replacement(template: &str, re: &Regex) -> Result<Vec<Piece>, Error> {
    let groups = re.captures_len();
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = template.chars().peekable();
    let bad_group = |g: &str| error(format!("re.error: invalid group reference {g}"));
    while let Some(c) = chars.next() {
        if c != '\\' {
            text.push(c);
            continue;
        }
        let Some(next) = chars.next() else {
            return Err(error("re.error: bad escape (end of pattern)"));
        };
        if let Some(escaped) = simple_escape(next) {
            text.push(escaped);
            continue;
        }
        let group = match next {
            'g' => {
                if chars.next() != Some('<') {
                    return Err(error("re.error: missing <"));
                }
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('>') => break,
                        Some(c) => name.push(c),
                        None => return Err(error("re.error: missing >, unterminated name")),
                    }
                }
                match name.parse::<usize>() {
                    Ok(n) if n < groups => n,
                    Ok(_) => return Err(bad_group(&name)),
                    Err(_) => re
                        .capture_names()
                        .position(|n| n == Some(name.as_str()))
                        .ok_or_else(|| error(format!("unknown group name '{name}'")))?,
                }
            }
            d if d.is_ascii_digit() => {
                let mut digits = d.to_string();
                if let Some(&d2) = chars.peek().filter(|c| c.is_ascii_digit()) {
                    digits.push(d2);
                    chars.next();
                }
                let n: usize = digits.parse().unwrap_or(0);
                if n == 0 || n >= groups {
                    return Err(bad_group(&digits));
                }
                n
            }
            c if c.is_ascii_alphabetic() => {
                return Err(error(format!("re.error: bad escape \\{c}")));
            }
            c => {
                text.push('\\');
                text.push(c);
                continue;
            }
        };
        pieces.push(Piece::Text(std::mem::take(&mut text)));
        pieces.push(Piece::Group(group));
    }
    pieces.push(Piece::Text(text));
    Ok(pieces)
}

/// The character of a one-letter escape of a replacement template (`\n`, `\\`, ...).
fn simple_escape(c: char) -> Option<char> {
    Some(match c {
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        'f' => '\u{c}',
        'v' => '\u{b}',
        'a' => '\u{7}',
        'b' => '\u{8}',
        '\\' => '\\',
        _ => return None,
    })
}

/// `regex_replace(value, pattern, replacement, ignorecase=False)`: `re.sub`, every match.
pub(crate) fn regex_replace(
    state: &State,
    value: Value,
    pattern: String,
    replacement_template: String,
    ignorecase: Option<bool>,
) -> Result<Value, Error> {
    let text = python::str_of(&value)?;
    let re = compile(state, &pattern, ignorecase.unwrap_or(false), false)?;
    let pieces = replacement(&replacement_template, &re)?;
    let mut out = Capped::new(MAX_VALUE_BYTES);
    let mut last = 0;
    let mut matches = re.captures_iter(text.as_str());
    while let Some(caps) = timed(state, || matches.next())? {
        let caps = caps.map_err(|e| failed(&e))?;
        let Some(whole) = caps.get(0) else { continue };
        let mut write = || -> std::fmt::Result {
            use std::fmt::Write as _;
            out.write_str(&text[last..whole.start()])?;
            for piece in &pieces {
                match piece {
                    Piece::Text(t) => out.write_str(t)?,
                    Piece::Group(g) => out.write_str(caps.get(*g).map_or("", |m| m.as_str()))?,
                }
            }
            Ok(())
        };
        write().map_err(|_| too_large())?;
        last = whole.end();
    }
    {
        use std::fmt::Write as _;
        out.write_str(&text[last..]).map_err(|_| too_large())?;
    }
    Ok(Value::from(out.buf))
}

/// One `re.findall` item: the whole match without groups, the group with one, a tuple of
/// the groups (`''` for those that did not take part) with more.
fn finding(caps: &Captures<'_, str>, groups: usize) -> Value {
    let group = |g: usize| Value::from(caps.get(g).map_or("", |m| m.as_str()));
    match groups {
        0 => group(0),
        1 => group(1),
        n => Value::from(Tuple::from((1..=n).map(group).collect::<Vec<_>>())),
    }
}

/// `regex_substring(value, pattern, result_index=0, ignorecase=False)`:
/// `re.findall(...)[result_index]`; no such match is Python's `IndexError`.
pub(crate) fn regex_substring(
    state: &State,
    value: Value,
    pattern: String,
    result_index: Option<i64>,
    ignorecase: Option<bool>,
) -> Result<Value, Error> {
    let text = python::str_of(&value)?;
    let re = compile(state, &pattern, ignorecase.unwrap_or(false), false)?;
    let groups = re.captures_len() - 1;
    let index = result_index.unwrap_or(0);
    let mut found = Vec::new();
    let mut bytes = 0usize;
    let mut matches = re.captures_iter(text.as_str());
    while let Some(caps) = timed(state, || matches.next())? {
        let caps = caps.map_err(|e| failed(&e))?;
        let item = finding(&caps, groups);
        if usize::try_from(index).is_ok_and(|i| i == found.len()) {
            return Ok(item);
        }
        bytes = bytes.saturating_add(caps.get(0).map_or(0, |m| m.as_str().len()) + 8);
        if bytes > MAX_VALUE_BYTES {
            return Err(too_large());
        }
        found.push(item);
    }
    let from_end = usize::try_from(index.unsigned_abs()).unwrap_or(usize::MAX);
    if index < 0 && from_end <= found.len() {
        return Ok(found.swap_remove(found.len() - from_end));
    }
    Err(error("IndexError: list index out of range"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::filters::test_support::{ok, render};

    /// `st2common/tests/unit/test_jinja_render_regex_filters.py`.
    #[test]
    fn upstream_regex_filter_tests() {
        let xyz = json!({"k1": "xyz"});
        assert_eq!(ok(r#"{{k1 | regex_match("x")}}"#, xyz.clone()), "True");
        assert_eq!(ok(r#"{{k1 | regex_match("y")}}"#, xyz.clone()), "False");
        let v = json!({"k1": "v0.10.1"});
        assert_eq!(
            ok(
                r#"{{k1 | regex_match("^v(\d+\.)?(\d+\.)?(\*|\d+)$")}}"#,
                v.clone()
            ),
            "True"
        );
        assert_eq!(
            ok(r#"{{k1 | regex_replace("x", "y")}}"#, xyz.clone()),
            "yyz"
        );
        assert_eq!(
            ok(
                r#"{{k1 | regex_replace("(blue|white|red)", "color")}}"#,
                json!({"k1": "blue socks and red shoes"})
            ),
            "color socks and color shoes"
        );
        assert_eq!(ok(r#"{{k1 | regex_search("x")}}"#, xyz.clone()), "True");
        assert_eq!(ok(r#"{{k1 | regex_search("y")}}"#, xyz.clone()), "True");
        assert_eq!(
            ok(r#"{{k1 | regex_search("^v(\d+\.)?(\d+\.)?(\*|\d+)$")}}"#, v),
            "True"
        );
        let template = r#"{{input_str | regex_substring("([0-9]{3} \w+ (?:Ave|St|Dr))")}}"#;
        assert_eq!(
            ok(
                template,
                json!({"input_str": "My address is 123 Somewhere Ave. See you soon!"})
            ),
            "123 Somewhere Ave"
        );
        let second = r#"{{input_str | regex_substring("([0-9]{3} \w+ (?:Ave|St|Dr))", 1)}}"#;
        assert_eq!(
            ok(
                second,
                json!({"input_str": "Your address is 567 Elsewhere Dr. My address is 123 Somewhere Ave."})
            ),
            "123 Somewhere Ave"
        );
        let err = render(
            second,
            json!({"input_str": "Your address is 567 Elsewhere Dr."}),
        )
        .unwrap_err();
        assert!(err.contains("IndexError: list index out of range"), "{err}");
        assert!(
            render(
                r#"{{input_str | regex_substring("([0-3]{3} \w+ (?:Ave|St|Dr))")}}"#,
                json!({"input_str": "My address is 986 Somewhere Ave. See you soon!"})
            )
            .is_err()
        );
    }

    /// Python `re` details (docs/st2-jinja-filters.md §3).
    #[test]
    fn python_re_semantics() {
        let ctx = json!({"e": "joe@example", "s": "a12b345", "n": null});
        assert_eq!(
            ok(
                r#"{{ e | regex_replace("(\w+)@(\w+)", "\\2 at \\1") }}"#,
                ctx.clone()
            ),
            "example at joe"
        );
        assert_eq!(
            ok(
                r#"{{ e | regex_replace("(?P<u>\w+)@", "\\g<u>#") }}"#,
                ctx.clone()
            ),
            "joe#example"
        );
        assert_eq!(
            ok(r#"{{ "bab" | regex_replace("a", "$1") }}"#, ctx.clone()),
            "b$1b"
        );
        assert_eq!(
            ok(
                r#"{{ "b" | regex_replace("(a)?b", "[\\1]") }}"#,
                ctx.clone()
            ),
            "[]"
        );
        assert_eq!(
            ok(r#"{{ "abc" | regex_replace("", "-") }}"#, ctx.clone()),
            "-a-b-c-"
        );
        assert!(render(r#"{{ "ab" | regex_replace("(a)", "\\3") }}"#, ctx.clone()).is_err());
        assert_eq!(ok(r#"{{ s | regex_substring("\d+") }}"#, ctx.clone()), "12");
        assert_eq!(
            ok(r#"{{ s | regex_substring("\d+", -1) }}"#, ctx.clone()),
            "345"
        );
        assert_eq!(
            ok(r#"{{ s | regex_substring("(\d)(\d)") }}"#, ctx.clone()),
            "('1', '2')"
        );
        assert_eq!(
            ok(r#"{{ s | regex_substring("(\d)(\d)", 1) }}"#, ctx.clone()),
            "('3', '4')"
        );
        assert_eq!(
            ok(r#"{{ "ab" | regex_substring("(a)|(b)", 1) }}"#, ctx.clone()),
            "('', 'b')"
        );
        assert_eq!(ok(r#"{{ n | regex_match("N") }}"#, ctx.clone()), "True");
        assert_eq!(
            ok(r#"{{ "XYZ" | regex_match("x", true) }}"#, ctx.clone()),
            "True"
        );
        assert_eq!(
            ok(r#"{{ "abc" | regex_search("(?<=a)b") }}"#, ctx.clone()),
            "True"
        );
        assert!(render(r#"{{ "x" | regex_match("(") }}"#, ctx).is_err());
    }

    /// A pattern that backtracks hard before every match (fancy-regex allows a million steps
    /// per match, so each one succeeds) costs fuel by its time: a payload of many such matches,
    /// or a search repeated in a loop, fails the render instead of running for minutes.
    #[test]
    fn backtracking_matches_are_charged_by_time() {
        let pattern = "(?:((?=a)a|a)+b|c)";
        let payload = format!("{}c", "a".repeat(15)).repeat(2_000);
        for template in [
            format!(r#"{{{{ k | regex_replace("{pattern}", "x") | length }}}}"#),
            format!(r#"{{{{ k | regex_substring("{pattern}", 1999) }}}}"#),
        ] {
            let error = render(&template, json!({"k": payload})).unwrap_err();
            assert!(error.contains("fuel"), "{template}: {error}");
        }
        let looped = format!(
            r#"{{% for i in range(2000) %}}{{{{ k | regex_search("{pattern}") }}}}{{% endfor %}}"#
        );
        let error = render(&looped, json!({"k": "a".repeat(16)})).unwrap_err();
        assert!(error.contains("fuel"), "{error}");
        // A new pattern on every turn of a loop is compiled every time, and charged too.
        let compiled = r#"{% for i in range(5000) %}{{ "x" | regex_search(p ~ i) }}{% endfor %}"#;
        let error = render(compiled, json!({"p": "(a|b|c|d)".repeat(3000)})).unwrap_err();
        assert!(error.contains("fuel"), "{error}");
    }
}
