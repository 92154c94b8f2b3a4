//! `st2common/expressions/functions/time.py` (`docs/st2-jinja-filters.md` §6).

use minijinja::value::ValueKind;
use minijinja::{Error, Value};

use super::error;
use crate::python;

/// `to_human_time_from_seconds(seconds)`: `3h25m45s`. StackStorm's arithmetic, quirks kept:
/// below 1 (negatives too) it is the number followed by `μs`; floats round half to even; the
/// parts come from the date `0001-01-01 + seconds`, so months are dropped (31 days is `0s`);
/// past the year 9999 it is Python's `OverflowError`. Anything but an int or a float is the
/// `AssertionError` of its `assert`.
pub(crate) fn to_human_time_from_seconds(seconds: Value) -> Result<Value, Error> {
    let assertion = || error("AssertionError");
    let whole: i128 = match seconds.kind() {
        ValueKind::Bool => i128::from(seconds.is_true()),
        ValueKind::Number if seconds.is_integer() => i128::try_from(seconds.clone())?,
        ValueKind::Number => {
            let f = f64::try_from(seconds.clone())?;
            if f == 0.0 {
                return Ok(Value::from("0s"));
            }
            if f < 1.0 {
                return Ok(Value::from(format!("{}\u{3bc}s", python::float_repr(f))));
            }
            let rounded = f.round_ties_even();
            if rounded > 1e15 {
                return Err(overflow());
            }
            // Checked above: finite and below 1e15.
            rounded as i128
        }
        _ => return Err(assertion()),
    };
    if whole == 0 {
        return Ok(Value::from("0s"));
    }
    if whole < 1 {
        return Ok(Value::from(format!("{whole}\u{3bc}s")));
    }
    let seconds = i64::try_from(whole).map_err(|_| overflow())?;
    let start = chrono::NaiveDate::from_ymd_opt(1, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .ok_or_else(overflow)?;
    let date = chrono::TimeDelta::try_seconds(seconds)
        .and_then(|delta| start.checked_add_signed(delta))
        .filter(|d| chrono::Datelike::year(d) <= 9999)
        .ok_or_else(overflow)?;
    use chrono::{Datelike, Timelike};
    let parts = [
        i64::from(date.year() - 1),
        i64::from(date.day() - 1),
        i64::from(date.hour()),
        i64::from(date.minute()),
        i64::from(date.second()),
    ];
    let Some(first) = parts.iter().position(|&p| p != 0) else {
        return Ok(Value::from("0s"));
    };
    let units = ["y", "d", "h", "m", "s"];
    let text: String = parts[first..]
        .iter()
        .zip(&units[first..])
        .map(|(p, u)| format!("{p}{u}"))
        .collect();
    Ok(Value::from(text))
}

fn overflow() -> Error {
    error("OverflowError: date value out of range")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::filters::test_support::{ok, render};

    /// `test_jinja_render_time_filters.py` and `test_time_jinja_filters.py`, plus the quirks
    /// verified in docs/st2-jinja-filters.md §6.
    #[test]
    fn upstream_time_filter_tests() {
        let human =
            |k1: serde_json::Value| ok("{{k1 | to_human_time_from_seconds}}", json!({"k1": k1}));
        assert_eq!(human(json!(12345)), "3h25m45s");
        assert_eq!(human(json!(0)), "0s");
        assert!(
            render(
                "{{k1 | to_human_time_from_seconds}}",
                json!({"k1": "stuff"})
            )
            .is_err()
        );
        assert_eq!(human(json!(0.1)), "0.1\u{3bc}s");
        assert_eq!(human(json!(56)), "56s");
        assert_eq!(human(json!(56.2)), "56s");
        assert_eq!(human(json!(456)), "7m36s");
        assert_eq!(human(json!(4560)), "1h16m0s");
        assert_eq!(human(json!(45_678_997)), "1y12d16h36m37s");
        assert_eq!(human(json!(-5)), "-5\u{3bc}s");
        assert_eq!(human(json!(2.5)), "2s");
        assert_eq!(human(json!(59.5)), "1m0s");
        assert_eq!(human(json!(86400 * 31)), "0s");
        assert_eq!(human(json!(86400 * 40 + 5)), "9d0h0m5s");
        assert_eq!(human(json!(86400 * 1461)), "4y0d0h0m0s");
        assert_eq!(human(json!(315_537_897_599_i64)), "9998y30d23h59m59s");
        assert!(
            render(
                "{{k1 | to_human_time_from_seconds}}",
                json!({"k1": 315_537_897_600_i64})
            )
            .is_err()
        );
    }
}
