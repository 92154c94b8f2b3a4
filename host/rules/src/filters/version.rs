//! `st2common/expressions/functions/version.py`: semver 3.0.4's `Version`
//! (`docs/st2-jinja-filters.md` §7), on the `semver` crate's strict SemVer 2.0 parser.
//! Comparisons ignore build metadata, as Python's semver does; bumps drop the pre-release and
//! the build.

use std::cmp::Ordering;

use minijinja::{Error, Value};

use super::error;
use crate::python::type_name;

/// `Version.parse(value)`: a strict SemVer string (Python's `$` also accepts one trailing
/// newline).
fn parse(value: &Value) -> Result<semver::Version, Error> {
    let Some(text) = value.as_str() else {
        return Err(error(format!(
            "TypeError: not expecting type '<class '{}'>'",
            type_name(value)
        )));
    };
    let trimmed = text.strip_suffix('\n').unwrap_or(text);
    semver::Version::parse(trimmed)
        .map_err(|_| error(format!("ValueError: {text} is not valid SemVer string")))
}

/// `compare`: major, minor, patch, then pre-release (none is greater); build ignored.
fn compare(value: &Value, other: &Value) -> Result<i64, Error> {
    let a = parse(value)?;
    let b = parse(other)?;
    let ordering = (a.major, a.minor, a.patch)
        .cmp(&(b.major, b.minor, b.patch))
        .then_with(|| a.pre.cmp(&b.pre));
    Ok(match ordering {
        Ordering::Less => -1,
        Ordering::Equal => 0,
        Ordering::Greater => 1,
    })
}

/// `version_compare(value, pattern)`: -1, 0 or 1.
pub(crate) fn version_compare(value: Value, pattern: Value) -> Result<i64, Error> {
    compare(&value, &pattern)
}

/// `version_more_than(value, pattern)`.
pub(crate) fn version_more_than(value: Value, pattern: Value) -> Result<bool, Error> {
    Ok(compare(&value, &pattern)? == 1)
}

/// `version_less_than(value, pattern)`.
pub(crate) fn version_less_than(value: Value, pattern: Value) -> Result<bool, Error> {
    Ok(compare(&value, &pattern)? == -1)
}

/// `version_equal(value, pattern)`.
pub(crate) fn version_equal(value: Value, pattern: Value) -> Result<bool, Error> {
    Ok(compare(&value, &pattern)? == 0)
}

/// `version_match(value, pattern)`: `<op><version>` with `<`, `>`, `==`, `<=`, `>=`, `!=`;
/// a bare version means `==`.
pub(crate) fn version_match(value: Value, pattern: String) -> Result<bool, Error> {
    let two = pattern.get(..2).unwrap_or_default();
    let (op, version) = if matches!(two, ">=" | "<=" | "==" | "!=") {
        (two, &pattern[2..])
    } else if pattern.starts_with(['>', '<']) {
        (&pattern[..1], &pattern[1..])
    } else if pattern.starts_with(|c: char| c.is_ascii_digit()) {
        ("==", pattern.as_str())
    } else {
        return Err(error(format!(
            "ValueError: match_expr parameter should be in format <op><ver>, where <op> is one \
             of ['<', '>', '==', '<=', '>=', '!=']. You provided: '{pattern}'"
        )));
    };
    let cmp = compare(&value, &Value::from(version))?;
    Ok(match op {
        ">" => cmp == 1,
        "<" => cmp == -1,
        "==" => cmp == 0,
        "!=" => cmp != 0,
        ">=" => cmp >= 0,
        _ => cmp <= 0,
    })
}

/// `version_bump_major(value)`: `M+1.0.0`.
pub(crate) fn version_bump_major(value: Value) -> Result<String, Error> {
    let v = parse(&value)?;
    Ok(format!("{}.0.0", v.major.saturating_add(1)))
}

/// `version_bump_minor(value)`: `M.m+1.0`.
pub(crate) fn version_bump_minor(value: Value) -> Result<String, Error> {
    let v = parse(&value)?;
    Ok(format!("{}.{}.0", v.major, v.minor.saturating_add(1)))
}

/// `version_bump_patch(value)`: `M.m.p+1`.
pub(crate) fn version_bump_patch(value: Value) -> Result<String, Error> {
    let v = parse(&value)?;
    Ok(format!(
        "{}.{}.{}",
        v.major,
        v.minor,
        v.patch.saturating_add(1)
    ))
}

/// `version_strip_patch(value)`: `M.m`.
pub(crate) fn version_strip_patch(value: Value) -> Result<String, Error> {
    let v = parse(&value)?;
    Ok(format!("{}.{}", v.major, v.minor))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::filters::test_support::{ok, render};

    fn with(template: &str, version: &str) -> String {
        ok(template, json!({"version": version}))
    }

    /// `st2common/tests/unit/test_jinja_render_version_filters.py`.
    #[test]
    fn upstream_version_filter_tests() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            (
                r#"{{version | version_compare("0.10.0")}}"#,
                &[("0.9.0", "-1"), ("0.10.1", "1"), ("0.10.0", "0")],
            ),
            (
                r#"{{version | version_more_than("0.10.0")}}"#,
                &[("0.9.0", "False"), ("0.10.1", "True"), ("0.10.0", "False")],
            ),
            (
                r#"{{version | version_less_than("0.10.0")}}"#,
                &[("0.9.0", "True"), ("0.10.1", "False"), ("0.10.0", "False")],
            ),
            (
                r#"{{version | version_equal("0.10.0")}}"#,
                &[("0.9.0", "False"), ("0.10.1", "False"), ("0.10.0", "True")],
            ),
            (
                r#"{{version | version_match(">0.10.0")}}"#,
                &[("0.10.1", "True"), ("0.1.1", "False")],
            ),
            (
                r#"{{version | version_match("<0.10.0")}}"#,
                &[("0.1.0", "True"), ("1.1.0", "False")],
            ),
            (
                r#"{{version | version_match("==0.10.0")}}"#,
                &[("0.10.0", "True"), ("0.10.1", "False")],
            ),
            ("{{version | version_bump_major}}", &[("0.10.1", "1.0.0")]),
            ("{{version | version_bump_minor}}", &[("0.10.1", "0.11.0")]),
            ("{{version | version_bump_patch}}", &[("0.10.1", "0.10.2")]),
            ("{{version | version_strip_patch}}", &[("0.10.1", "0.10")]),
        ];
        for (template, vectors) in cases {
            for (version, expected) in *vectors {
                assert_eq!(with(template, version), *expected, "{template} {version}");
            }
        }
    }

    /// semver 3.0.4 details (docs/st2-jinja-filters.md §7).
    #[test]
    fn semver_semantics() {
        let cmp = |a: &str, b: &str| ok("{{ a | version_compare(b) }}", json!({"a": a, "b": b}));
        assert_eq!(cmp("1.0.0", "1.0.0-rc.1"), "1");
        assert_eq!(cmp("1.0.0-B", "1.0.0-a"), "-1");
        assert_eq!(cmp("1.0.0-rc.9", "1.0.0-rc.10"), "-1");
        assert_eq!(cmp("1.0.0-alpha.1", "1.0.0-alpha.beta"), "-1");
        assert_eq!(cmp("1.0.0+build.5", "1.0.0"), "0");
        assert_eq!(cmp("1.0.0\n", "1.0.0"), "0");
        assert_eq!(
            with("{{ version | version_match('1.0.0') }}", "1.0.0"),
            "True"
        );
        assert_eq!(
            with("{{ version | version_match('!=1.0.0') }}", "1.0.0"),
            "False"
        );
        assert_eq!(
            with("{{ version | version_match('>=1.0.0') }}", "1.0.0"),
            "True"
        );
        assert_eq!(
            with("{{ version | version_bump_major }}", "1.2.3-rc.1+b.2"),
            "2.0.0"
        );
        assert_eq!(
            with("{{ version | version_strip_patch }}", "1.2.3-rc.1+b.2"),
            "1.2"
        );
        for bad in ["1.0", "v1.0.0", "01.0.0", "bad"] {
            let err = render(
                "{{ version | version_bump_major }}",
                json!({"version": bad}),
            )
            .unwrap_err();
            assert!(
                err.contains(&format!("{bad} is not valid SemVer string")),
                "{err}"
            );
        }
        assert!(
            render(
                "{{ version | version_match('~1.0.0') }}",
                json!({"version": "1.0.0"})
            )
            .unwrap_err()
            .contains("match_expr parameter")
        );
        assert_eq!(
            ok(r#"{{"1.6.0" | version_bump_minor}}"#, json!({})),
            "1.7.0"
        );
    }
}
