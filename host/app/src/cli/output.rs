//! How client commands print: aligned text tables for lists, property lists for single objects.
//! Output goes through [`emit`], so a closed pipe (`stormhook rule list | head -1`) ends the
//! output quietly instead of panicking.

use std::io::Write as _;

use serde_json::Value;

/// Writes `text` to stdout; a closed stdout is ignored.
pub fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Prints `value` as pretty JSON (for `-j`).
pub fn print_json(value: &Value) {
    emit(&format!(
        "{}\n",
        serde_json::to_string_pretty(value).unwrap_or_default()
    ));
}

/// The value at a dotted path (`action.ref`), or `null` when any step is missing.
pub fn lookup<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .try_fold(value, |v, key| v.get(key))
        .unwrap_or(&Value::Null)
}

/// A value as one table cell: strings as they are, `-` for nothing, other values as compact
/// JSON; line breaks become spaces so the rows stay aligned.
pub fn cell(value: &Value) -> String {
    let text = match value {
        Value::Null => return "-".to_owned(),
        Value::String(s) if s.is_empty() => return "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    text.replace(['\n', '\r'], " ")
}

/// Formats rows under a header, columns separated by two spaces; `empty` is printed under the
/// header when there are no rows.
pub fn table(header: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if rows.is_empty() {
        out.push_str(empty);
        out.push('\n');
    }
    out
}

/// Prints JSON objects as a table: one column per `(header, dotted path)`.
pub fn print_table(items: &[Value], columns: &[(&str, &str)], empty: &str) {
    let header: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            columns
                .iter()
                .map(|(_, path)| cell(lookup(item, path)))
                .collect()
        })
        .collect();
    emit(&table(&header, &rows, empty));
}

/// When the server matched more items than it sent, says so on stderr (as `st2` does).
pub fn note_truncated(shown: usize, total: Option<u64>, what: &str) {
    if let Some(total) = total.filter(|&t| t > shown as u64) {
        let _ = writeln!(
            std::io::stderr(),
            "note: only {shown} of {total} {what} are shown; use -n/--limit for more"
        );
    }
}

/// Formats a JSON object as `name  value` lines, names aligned: the `first` fields in that
/// order, then the others in the server's order. Objects and arrays are pretty JSON, indented
/// under the value column. A value that is not an object is printed as pretty JSON.
pub fn properties(object: &Value, first: &[&str]) -> String {
    let Some(map) = object.as_object() else {
        return format!(
            "{}\n",
            serde_json::to_string_pretty(object).unwrap_or_default()
        );
    };
    let mut keys: Vec<&str> = first
        .iter()
        .copied()
        .filter(|k| map.contains_key(*k))
        .collect();
    keys.extend(
        map.keys()
            .map(String::as_str)
            .filter(|k| !first.contains(k)),
    );
    let width = keys.iter().map(|k| k.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for key in keys {
        let value = &map[key];
        let text = match value {
            Value::Null => "-".to_owned(),
            Value::String(s) => s.clone(),
            Value::Object(o) if o.is_empty() => "{}".to_owned(),
            Value::Array(a) if a.is_empty() => "[]".to_owned(),
            other => serde_json::to_string_pretty(other).unwrap_or_default(),
        };
        let indent = " ".repeat(width + 2);
        let text = text.replace('\n', &format!("\n{indent}"));
        out.push_str(&format!("{key:<width$}  {text}\n"));
    }
    out
}

/// Prints a JSON object as [`properties`] formats it.
pub fn print_properties(object: &Value, first: &[&str]) {
    emit(&properties(object, first));
}

/// Prints one object: JSON with `-j`, otherwise a property list with `first` fields first.
/// Returns the success exit code, for commands that end with it.
pub fn print_object(json: bool, body: &Value, first: &[&str]) -> std::process::ExitCode {
    if json {
        print_json(body);
    } else {
        print_properties(body, first);
    }
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tables_align_and_say_when_empty() {
        let text = table(
            &["REF", "ENABLED"],
            &[
                vec!["a.b".into(), "true".into()],
                vec!["long.name".into(), "-".into()],
            ],
            "(none)",
        );
        assert_eq!(text, "REF        ENABLED\na.b        true\nlong.name  -\n");
        assert_eq!(table(&["A"], &[], "(none)"), "A\n(none)\n");
    }

    #[test]
    fn properties_put_the_named_fields_first_and_indent_json() {
        let value = json!({"z": 1, "id": "x", "o": {"k": [1]}, "e": {}, "s": "two\nlines"});
        assert_eq!(
            properties(&value, &["id", "missing"]),
            "id  x\nz   1\no   {\n      \"k\": [\n        1\n      ]\n    }\ne   {}\ns   two\n    lines\n"
        );
    }

    #[test]
    fn lookup_follows_dots_and_cells_flatten() {
        let value = json!({"action": {"ref": "core.local"}, "n": 3});
        assert_eq!(cell(lookup(&value, "action.ref")), "core.local");
        assert_eq!(cell(lookup(&value, "action.nope")), "-");
        assert_eq!(cell(lookup(&value, "n")), "3");
        assert_eq!(cell(&json!("a\nb")), "a b");
    }
}
