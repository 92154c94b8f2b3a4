//! `st2common/expressions/functions/path.py`: `posixpath` (`docs/st2-jinja-filters.md` §8).

use minijinja::{Error, Value};

use super::error;
use crate::python::type_name;

fn text(path: &Value) -> Result<&str, Error> {
    path.as_str().ok_or_else(|| {
        error(format!(
            "expected str, bytes or os.PathLike object, not {}",
            type_name(path)
        ))
    })
}

/// `basename(path)`: everything after the last `/`.
pub(crate) fn basename(path: Value) -> Result<Value, Error> {
    let path = text(&path)?;
    Ok(Value::from(path.rsplit('/').next().unwrap_or_default()))
}

/// `dirname(path)`: everything before the last `/`, trailing slashes removed unless it is
/// only slashes.
pub(crate) fn dirname(path: Value) -> Result<Value, Error> {
    let path = text(&path)?;
    let head = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    if head.is_empty() || head.bytes().all(|b| b == b'/') {
        return Ok(Value::from(head));
    }
    Ok(Value::from(head.trim_end_matches('/')))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::filters::test_support::{ok, render};

    /// `st2common/tests/unit/test_jinja_render_path_filters.py` and the cases verified in
    /// docs/st2-jinja-filters.md §8.
    #[test]
    fn upstream_path_filter_tests() {
        for (filter, path, expected) in [
            ("basename", "/some/path/to/file.txt", "file.txt"),
            ("basename", "/some/path/to/dir", "dir"),
            ("basename", "/some/path/to/dir/", ""),
            ("dirname", "/some/path/to/file.txt", "/some/path/to"),
            ("dirname", "/some/path/to/dir", "/some/path/to"),
            ("dirname", "/some/path/to/dir/", "/some/path/to/dir"),
            ("basename", "file", "file"),
            ("dirname", "file", ""),
            ("dirname", "/", "/"),
            ("basename", "/", ""),
            ("dirname", "//a//b", "//a"),
            ("dirname", "a/b/", "a/b"),
            ("basename", "C:\\dir\\file", "C:\\dir\\file"),
        ] {
            assert_eq!(
                ok(&format!("{{{{k1 | {filter}}}}}"), json!({"k1": path})),
                expected,
                "{filter}({path})"
            );
        }
        assert!(render("{{k1 | basename}}", json!({"k1": 5})).is_err());
    }
}
