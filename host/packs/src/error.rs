//! The error of a pack document.

use std::fmt;

/// A document that cannot be used, with where the problem is.
///
/// Displays as `path:line:column: message`, the form editors and terminals link to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DocError {
    /// The file, as the caller named it.
    pub path: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for DocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => {
                write!(f, "{}:{line}:{column}: {}", self.path, self.message)
            }
            (Some(line), None) => write!(f, "{}:{line}: {}", self.path, self.message),
            _ => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

impl DocError {
    /// An error from the YAML parser or from serde, located where the parser says.
    pub(crate) fn from_yaml(path: &str, err: &yaml_serde::Error) -> Self {
        let location = err.location();
        let mut message = err.to_string();
        // The parser appends " at line L column C"; the location is already in the prefix.
        if let Some(cut) = message.find(" at line ") {
            message.truncate(cut);
        }
        Self {
            path: path.to_owned(),
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
            message,
        }
    }

    /// A semantic error about the value of top-level key `key`, located at that key.
    pub(crate) fn at_key(path: &str, text: &str, key: &str, message: impl Into<String>) -> Self {
        let (line, column) =
            locate_key(text, key).map_or((None, None), |(l, c)| (Some(l), Some(c)));
        Self {
            path: path.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// Finds the first line that defines `key` (`key:` after optional indentation) and returns its
/// 1-based line and the column of the key. A dotted key (`wasm.entry_point`) finds the last
/// segment after the first segment's line.
pub(crate) fn locate_key(text: &str, key: &str) -> Option<(usize, usize)> {
    let mut start = 0;
    let mut found = None;
    for segment in key.split('.') {
        found = None;
        for (index, line) in text.lines().enumerate().skip(start) {
            let trimmed = line.trim_start();
            let rest = trimmed.strip_prefix(segment).or_else(|| {
                trimmed
                    .strip_prefix('"')
                    .and_then(|t| t.strip_prefix(segment))
                    .and_then(|t| t.strip_prefix('"'))
            });
            if rest.is_some_and(|r| r.trim_start().starts_with(':')) {
                found = Some((index + 1, line.len() - trimmed.len() + 1));
                start = index + 1;
                break;
            }
        }
        found?;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_nested_keys() {
        let text = "name: x\nwasm:\n  timeout_ms: 5\n  entry_point: a.wasm\n";
        assert_eq!(locate_key(text, "name"), Some((1, 1)));
        assert_eq!(locate_key(text, "wasm.entry_point"), Some((4, 3)));
        assert_eq!(locate_key(text, "missing"), None);
    }
}
