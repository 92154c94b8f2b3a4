//! Python's text conversions of template values, as StackStorm's Jinja2 produces them
//! (`docs/st2-jinja-filters.md` §0.3): `str()` (what `{{ value }}` prints: `True`, `None`,
//! `['a', 1]`, `{'k': 1.5}`, `1e+20`), `repr()` and `%` string formatting
//! (`{{ "%s-%05.1f" % (name, n) }}`, `{{ "%(a)s" % {"a": 1} }}`).
//!
//! Every result is written into a buffer capped at [`MAX_VALUE_BYTES`]; widths and precisions
//! beyond it are refused before anything is written.

use std::fmt::Write as _;

use minijinja::value::{ObjectRepr, ValueKind};
use minijinja::{Error, ErrorKind, Value};

use crate::sandbox::{Capped, MAX_VALUE_BYTES, too_large};

/// `str(value)`: strings as they are, everything else as Python prints it.
pub(crate) fn str_of(value: &Value) -> Result<String, Error> {
    if let Some(s) = value.as_str() {
        return Ok(s.to_owned());
    }
    let mut out = Capped::new(MAX_VALUE_BYTES);
    write_str(&mut out, value).map_err(|_| too_large())?;
    Ok(out.buf)
}

/// `repr(value)`.
pub(crate) fn repr_of(value: &Value) -> Result<String, Error> {
    let mut out = Capped::new(MAX_VALUE_BYTES);
    write_repr(&mut out, value).map_err(|_| too_large())?;
    Ok(out.buf)
}

fn write_str(out: &mut Capped, value: &Value) -> std::fmt::Result {
    match value.kind() {
        ValueKind::String => out.write_str(value.as_str().unwrap_or_default()),
        ValueKind::Undefined => Ok(()),
        ValueKind::Plain => write!(out, "{value}"),
        _ => write_repr(out, value),
    }
}

fn write_repr(out: &mut Capped, value: &Value) -> std::fmt::Result {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.write_str("None"),
        ValueKind::Bool => out.write_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number => write_number(out, value),
        ValueKind::String => write_quoted(out, value.as_str().unwrap_or_default()),
        ValueKind::Bytes => {
            out.write_str("b'")?;
            for b in value.as_bytes().unwrap_or_default() {
                match b {
                    b'\'' | b'\\' => write!(out, "\\{}", char::from(*b))?,
                    0x20..=0x7e => out.write_char(char::from(*b))?,
                    _ => write!(out, "\\x{b:02x}")?,
                }
            }
            out.write_str("'")
        }
        ValueKind::Map => {
            out.write_str("{")?;
            let pairs = value.as_object().and_then(|o| o.try_iter_pairs());
            for (i, (k, v)) in pairs.into_iter().flatten().enumerate() {
                if i > 0 {
                    out.write_str(", ")?;
                }
                write_repr(out, &k)?;
                out.write_str(": ")?;
                write_repr(out, &v)?;
            }
            out.write_str("}")
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let tuple = value.is_tuple();
            out.write_str(if tuple { "(" } else { "[" })?;
            let mut count = 0usize;
            let items = value
                .as_object()
                .filter(|o| o.repr() != ObjectRepr::Map)
                .and_then(|o| o.try_iter());
            for item in items.into_iter().flatten() {
                if count > 0 {
                    out.write_str(", ")?;
                }
                write_repr(out, &item)?;
                count += 1;
            }
            if tuple && count == 1 {
                out.write_str(",")?;
            }
            out.write_str(if tuple { ")" } else { "]" })
        }
        // Datastore lookups and other plain objects print as their text.
        ValueKind::Plain => write_quoted(out, &value.to_string()),
        _ => write!(out, "{value}"),
    }
}

fn write_number(out: &mut Capped, value: &Value) -> std::fmt::Result {
    if value.is_integer() {
        return write!(out, "{value}");
    }
    match f64::try_from(value.clone()) {
        Ok(f) => out.write_str(&float_repr(f)),
        Err(_) => write!(out, "{value}"),
    }
}

/// Python's `repr(float)`: the shortest text that reads back as the same float, in fixed
/// notation for exponents from -4 to 15 and scientific (`1e+16`, `1.5e-05`) outside.
pub(crate) fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    // Rust's `{:e}` is the shortest round-trip form too: `1.2345e-5`.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let point = exp + 1;
        let body = if point <= 0 {
            let zeros = "0".repeat(usize::try_from(-point).unwrap_or(0));
            format!("0.{zeros}{digits}")
        } else {
            let point = usize::try_from(point).unwrap_or(0);
            if digits.len() <= point {
                format!("{digits}{}.0", "0".repeat(point - digits.len()))
            } else {
                format!("{}.{}", &digits[..point], &digits[point..])
            }
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let rest = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{rest}e{exp_sign}{:02}", exp.abs())
    }
}

/// Python's quoting of a string: `'...'` unless it contains `'` and no `"`.
fn write_quoted(out: &mut Capped, s: &str) -> std::fmt::Result {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.write_char(quote)?;
    for c in s.chars() {
        match c {
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if c == quote => write!(out, "\\{c}")?,
            c if (c as u32) < 0x20 || c as u32 == 0x7f => write!(out, "\\x{:02x}", c as u32)?,
            c => out.write_char(c)?,
        }
    }
    out.write_char(quote)
}

// ---------------------------------------------------------------------------------------------
// `%` formatting

fn type_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, message.into())
}

/// A Python type name, for `TypeError` messages.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value.kind() {
        ValueKind::Undefined => "StrictUndefined",
        ValueKind::None => "NoneType",
        ValueKind::Bool => "bool",
        ValueKind::Number if value.is_integer() => "int",
        ValueKind::Number => "float",
        ValueKind::String => "str",
        ValueKind::Bytes => "bytes",
        ValueKind::Map => "dict",
        ValueKind::Seq | ValueKind::Iterable if value.is_tuple() => "tuple",
        ValueKind::Seq | ValueKind::Iterable => "list",
        _ => "object",
    }
}

/// One conversion specifier: `%(name)-08.3f`.
#[derive(Default)]
struct Spec {
    key: Option<String>,
    left: bool,
    zero: bool,
    plus: bool,
    space: bool,
    alternate: bool,
    width: Option<usize>,
    precision: Option<usize>,
    conversion: char,
}

/// `format % args` with Python's semantics: a tuple gives the positional values, a mapping the
/// `%(name)s` ones; anything else is the single value.
pub(crate) fn percent_format(format: &str, args: &Value) -> Result<String, Error> {
    let positional: Vec<Value> = if args.is_tuple() {
        args.try_iter()?.collect()
    } else {
        vec![args.clone()]
    };
    let mapping = args.kind() == ValueKind::Map;
    let mut next = 0usize;
    let mut out = Capped::new(MAX_VALUE_BYTES);
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.write_char(c).map_err(|_| too_large())?;
            continue;
        }
        let mut spec = Spec::default();
        if chars.peek() == Some(&'(') {
            chars.next();
            let mut depth = 1;
            let mut key = String::new();
            loop {
                match chars.next() {
                    Some('(') => {
                        depth += 1;
                        key.push('(');
                    }
                    Some(')') => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                        key.push(')');
                    }
                    Some(c) => key.push(c),
                    None => return Err(type_error("incomplete format key")),
                }
            }
            spec.key = Some(key);
        }
        while let Some(&flag) = chars.peek() {
            match flag {
                '-' => spec.left = true,
                '0' => spec.zero = true,
                '+' => spec.plus = true,
                ' ' => spec.space = true,
                '#' => spec.alternate = true,
                _ => break,
            }
            chars.next();
        }
        let mut take_arg = |spec: &Spec| -> Result<Value, Error> {
            if let Some(key) = &spec.key {
                if !mapping {
                    return Err(type_error("format requires a mapping"));
                }
                return args
                    .get_item(&Value::from(key.as_str()))
                    .ok()
                    .filter(|v| !v.is_undefined())
                    .ok_or_else(|| type_error(format!("KeyError: '{key}'")));
            }
            let value = positional
                .get(next)
                .cloned()
                .ok_or_else(|| type_error("not enough arguments for format string"))?;
            next += 1;
            Ok(value)
        };
        spec.width = number(&mut chars, || take_arg(&Spec::default()))?;
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.precision = Some(number(&mut chars, || take_arg(&Spec::default()))?.unwrap_or(0));
        }
        if spec.width.unwrap_or(0) > MAX_VALUE_BYTES
            || spec.precision.unwrap_or(0) > MAX_VALUE_BYTES
        {
            return Err(too_large());
        }
        while matches!(chars.peek(), Some('h' | 'l' | 'L')) {
            chars.next();
        }
        spec.conversion = chars
            .next()
            .ok_or_else(|| type_error("incomplete format"))?;
        if spec.conversion == '%' {
            out.write_char('%').map_err(|_| too_large())?;
            continue;
        }
        let value = take_arg(&spec)?;
        let text = convert(&spec, &value)?;
        pad(&mut out, &spec, &text).map_err(|_| too_large())?;
    }
    if !mapping && args.is_tuple() && next < positional.len()
        || !mapping && !args.is_tuple() && next == 0 && !is_sequence_like(args)
    {
        return Err(type_error(
            "not all arguments converted during string formatting",
        ));
    }
    Ok(out.buf)
}

/// Python lets `"text" % x` pass without conversions when `x` has `__getitem__` (lists,
/// strings); other values are "not all converted".
fn is_sequence_like(value: &Value) -> bool {
    matches!(
        value.kind(),
        ValueKind::Seq | ValueKind::Iterable | ValueKind::String | ValueKind::Map
    )
}

/// A width or precision: digits, or `*` (the next argument).
fn number(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    mut star: impl FnMut() -> Result<Value, Error>,
) -> Result<Option<usize>, Error> {
    if chars.peek() == Some(&'*') {
        chars.next();
        let value = star()?;
        let n = value
            .as_i64()
            .filter(|_| value.is_integer())
            .ok_or_else(|| type_error("* wants int"))?;
        return Ok(Some(usize::try_from(n.max(0)).unwrap_or(usize::MAX)));
    }
    let mut digits = String::new();
    while let Some(&c) = chars.peek().filter(|c| c.is_ascii_digit()) {
        digits.push(c);
        chars.next();
        if digits.len() > 12 {
            return Err(too_large());
        }
    }
    Ok(if digits.is_empty() {
        None
    } else {
        digits.parse().ok()
    })
}

/// A number for `%d` and friends, as Python's `int()` of an int, bool or float.
fn integer(spec: &Spec, value: &Value) -> Result<i128, Error> {
    match value.kind() {
        ValueKind::Bool => Ok(i128::from(value.is_true())),
        ValueKind::Number if value.is_integer() => i128::try_from(value.clone()),
        ValueKind::Number => {
            let f = f64::try_from(value.clone())?;
            if !f.is_finite() {
                return Err(type_error(
                    "cannot convert float infinity or NaN to integer",
                ));
            }
            // `as` saturates; floats beyond i128 are not useful in a template.
            Ok(f.trunc() as i128)
        }
        _ => Err(type_error(format!(
            "%{} format: a {} is required, not {}",
            spec.conversion,
            if matches!(spec.conversion, 'x' | 'X' | 'o') {
                "integer"
            } else {
                "real number"
            },
            type_name(value)
        ))),
    }
}

fn float(value: &Value) -> Result<f64, Error> {
    match value.kind() {
        ValueKind::Bool => Ok(if value.is_true() { 1.0 } else { 0.0 }),
        ValueKind::Number => f64::try_from(value.clone()),
        _ => Err(type_error(format!(
            "must be real number, not {}",
            type_name(value)
        ))),
    }
}

fn sign(spec: &Spec, negative: bool) -> &'static str {
    if negative {
        "-"
    } else if spec.plus {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    }
}

/// Largest precision of `%f`, `%e` and `%g` (Python has none). Rust's formatter panics above
/// `u16::MAX` (and `{:.65535e}` too); past about 1,100 digits a double's are all zeros.
const MAX_FLOAT_PRECISION: usize = 10_000;

/// The text of one conversion, before padding.
fn convert(spec: &Spec, value: &Value) -> Result<String, Error> {
    Ok(match spec.conversion {
        's' => truncate(str_of(value)?, spec.precision),
        'r' | 'a' => truncate(repr_of(value)?, spec.precision),
        'd' | 'i' | 'u' => {
            let n = integer(spec, value)?;
            let digits = n.unsigned_abs().to_string();
            format!(
                "{}{}",
                sign(spec, n < 0),
                zero_extend(digits, spec.precision)
            )
        }
        'x' | 'X' | 'o' => {
            let n = integer(spec, value)?;
            let abs = n.unsigned_abs();
            let (digits, prefix) = match spec.conversion {
                'x' => (format!("{abs:x}"), "0x"),
                'X' => (format!("{abs:X}"), "0X"),
                _ => (format!("{abs:o}"), "0o"),
            };
            let prefix = if spec.alternate { prefix } else { "" };
            format!(
                "{}{prefix}{}",
                sign(spec, n < 0),
                zero_extend(digits, spec.precision)
            )
        }
        'f' | 'F' | 'e' | 'E' | 'g' | 'G' => {
            let f = float(value)?;
            let precision = spec.precision.unwrap_or(6);
            // Rust's formatter panics on a precision of 65535 and above.
            if precision > MAX_FLOAT_PRECISION {
                return Err(type_error(format!(
                    "precision too large: {precision}, at most {MAX_FLOAT_PRECISION} for %{}",
                    spec.conversion
                )));
            }
            let body = if !f.is_finite() {
                let text = if f.is_nan() { "nan" } else { "inf" };
                if spec.conversion.is_ascii_uppercase() {
                    text.to_ascii_uppercase()
                } else {
                    text.to_owned()
                }
            } else {
                match spec.conversion {
                    'f' | 'F' => format!("{:.precision$}", f.abs()),
                    'e' | 'E' => exponent(f.abs(), precision, spec.conversion == 'E'),
                    _ => general(f.abs(), precision, spec),
                }
            };
            format!("{}{body}", sign(spec, f.is_sign_negative() && !f.is_nan()))
        }
        'c' => match value.as_str() {
            Some(s) if s.chars().count() == 1 => s.to_owned(),
            Some(_) => return Err(type_error("%c requires int or char")),
            None => {
                let n = integer(spec, value)?;
                u32::try_from(n)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| type_error("%c arg not in range(0x110000)"))?
                    .to_string()
            }
        },
        other => {
            return Err(type_error(format!(
                "unsupported format character '{other}' (0x{:x})",
                other as u32
            )));
        }
    })
}

fn truncate(text: String, precision: Option<usize>) -> String {
    match precision {
        Some(p) => text.chars().take(p).collect(),
        None => text,
    }
}

/// Digits padded with zeros to the precision (`%.3d` of 5 is `005`).
fn zero_extend(digits: String, precision: Option<usize>) -> String {
    match precision {
        Some(p) if p > digits.len() => format!("{}{digits}", "0".repeat(p - digits.len())),
        _ => digits,
    }
}

/// `%e`: `1.500000e+00`.
fn exponent(f: f64, precision: usize, upper: bool) -> String {
    let text = format!("{f:.precision$e}");
    let (mantissa, exp) = text.split_once('e').unwrap_or((&text, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let e = if upper { 'E' } else { 'e' };
    let exp_sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}{e}{exp_sign}{:02}", exp.abs())
}

/// `%g`: fixed or scientific by the exponent, trailing zeros removed (unless `#`).
fn general(f: f64, precision: usize, spec: &Spec) -> String {
    let precision = precision.max(1);
    let sci = format!("{f:.prec$e}", prec = precision - 1);
    let exp: i64 = sci
        .split_once('e')
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0);
    let precision_i = i64::try_from(precision).unwrap_or(i64::MAX);
    let text = if (-4..precision_i).contains(&exp) {
        let decimals = usize::try_from(precision_i - 1 - exp).unwrap_or(0);
        format!("{f:.decimals$}")
    } else {
        exponent(f, precision - 1, spec.conversion == 'G')
    };
    if spec.alternate {
        return text;
    }
    match text.find(['e', 'E']) {
        Some(at) => {
            let (mantissa, exp) = text.split_at(at);
            format!("{}{exp}", strip_zeros(mantissa))
        }
        None => strip_zeros(&text).to_owned(),
    }
}

fn strip_zeros(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

/// Writes `c` (ASCII) `n` times, a block at a time: a width of millions is one of the larger
/// things a template can ask for, and a character at a time took 0.3 s (debug build).
fn repeat(out: &mut Capped, c: char, n: usize) -> std::fmt::Result {
    let block = c.to_string().repeat(n.min(4096));
    let mut left = n;
    while left > 0 {
        let take = left.min(block.len());
        out.write_str(&block[..take])?;
        left -= take;
    }
    Ok(())
}

/// Writes `text` padded to the width: left-justified with `-`, zero-filled after the sign with
/// `0` for numbers, else right-justified with spaces.
fn pad(out: &mut Capped, spec: &Spec, text: &str) -> std::fmt::Result {
    let len = text.chars().count();
    let width = spec.width.unwrap_or(0);
    if len >= width {
        return out.write_str(text);
    }
    let fill = width - len;
    if spec.left {
        out.write_str(text)?;
        return repeat(out, ' ', fill);
    }
    let numeric = matches!(
        spec.conversion,
        'd' | 'i' | 'u' | 'x' | 'X' | 'o' | 'f' | 'F' | 'e' | 'E' | 'g' | 'G'
    );
    if spec.zero && numeric {
        let split = text
            .char_indices()
            .find(|(_, c)| !matches!(c, '-' | '+' | ' '))
            .map_or(0, |(i, _)| i);
        let (sign, digits) = text.split_at(split);
        let (prefix, digits) = if spec.alternate && digits.len() > 2 && digits.starts_with('0') {
            digits.split_at(2)
        } else {
            ("", digits)
        };
        out.write_str(sign)?;
        out.write_str(prefix)?;
        repeat(out, '0', fill)?;
        return out.write_str(digits);
    }
    repeat(out, ' ', fill)?;
    out.write_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_python_repr() {
        for (f, text) in [
            (1.0, "1.0"),
            (1e20, "1e+20"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
            (1.5e-7, "1.5e-07"),
            (123.456, "123.456"),
            (f64::INFINITY, "inf"),
        ] {
            assert_eq!(float_repr(f), text, "{f}");
        }
    }

    #[test]
    fn values_print_as_python_str() {
        let v = Value::from(minijinja::value::Serde(
            serde_json::json!({"a": "b", "c": [1, null, true, 1.5]}),
        ));
        assert_eq!(str_of(&v).unwrap(), "{'a': 'b', 'c': [1, None, True, 1.5]}");
        let v = Value::from(minijinja::value::Serde(serde_json::json!([
            "a", "q\"uote", "it's"
        ])));
        assert_eq!(str_of(&v).unwrap(), r#"['a', 'q"uote', "it's"]"#);
        let t = Value::from(minijinja::value::Tuple::from(vec![
            Value::from("t"),
            Value::from(1),
        ]));
        assert_eq!(str_of(&t).unwrap(), "('t', 1)");
        assert_eq!(str_of(&Value::from(false)).unwrap(), "False");
        assert_eq!(str_of(&Value::from(())).unwrap(), "None");
    }

    fn fmt(format: &str, args: Value) -> Result<String, String> {
        percent_format(format, &args).map_err(|e| e.to_string())
    }

    fn tuple(items: Vec<Value>) -> Value {
        Value::from(minijinja::value::Tuple::from(items))
    }

    #[test]
    fn percent_formatting_is_pythons() {
        assert_eq!(
            fmt("%s-%d", tuple(vec![Value::from("a"), Value::from(7)])).unwrap(),
            "a-7"
        );
        assert_eq!(fmt("%s", Value::from("v1")).unwrap(), "v1");
        assert_eq!(fmt("%.2f", Value::from(1.23456)).unwrap(), "1.23");
        assert_eq!(fmt("%f", Value::from(1)).unwrap(), "1.000000");
        assert_eq!(fmt("%05.1f", Value::from(-2.25)).unwrap(), "-02.2");
        assert_eq!(
            fmt(
                "%i|%5d|%-5d|",
                tuple(vec![Value::from(3.9), Value::from(42), Value::from(42)])
            )
            .unwrap(),
            "3|   42|42   |"
        );
        assert_eq!(
            fmt(
                "%x %X %#x %o",
                tuple(vec![
                    Value::from(255),
                    Value::from(255),
                    Value::from(255),
                    Value::from(8)
                ])
            )
            .unwrap(),
            "ff FF 0xff 10"
        );
        assert_eq!(fmt("%r", Value::from("it")).unwrap(), "'it'");
        assert_eq!(fmt("100%%", tuple(vec![])).unwrap(), "100%");
        assert_eq!(fmt("%e", Value::from(12345.678)).unwrap(), "1.234568e+04");
        assert_eq!(
            fmt("%g %g", tuple(vec![Value::from(0.5), Value::from(1e20)])).unwrap(),
            "0.5 1e+20"
        );
        assert_eq!(fmt("%s", Value::from(true)).unwrap(), "True");
        let map = Value::from(minijinja::value::Serde(
            serde_json::json!({"name": "ada", "n": 2}),
        ));
        assert_eq!(fmt("%(name)s has %(n)03d", map).unwrap(), "ada has 002");
        assert_eq!(
            fmt("%s %s", tuple(vec![Value::from(1)])).unwrap_err(),
            "invalid operation: not enough arguments for format string"
        );
        assert_eq!(
            fmt("%s", tuple(vec![Value::from(1), Value::from(2)])).unwrap_err(),
            "invalid operation: not all arguments converted during string formatting"
        );
        assert!(
            fmt("%d", Value::from("x"))
                .unwrap_err()
                .contains("%d format: a real number is required, not str")
        );
        assert!(
            fmt("%999999999999d", Value::from(1)).is_err(),
            "bounded width"
        );
        assert!(
            fmt("%.99999999f", Value::from(1)).is_err(),
            "bounded precision"
        );
        // Below the byte cap but above what Rust's formatter takes: an error, not a panic.
        for (flag, conversion) in [("", "f"), ("", "e"), ("", "g"), ("", "G"), ("#", "g")] {
            for precision in [65_535, 70_000] {
                let error = fmt(
                    &format!("%{flag}.{precision}{conversion}"),
                    Value::from(1.5),
                )
                .unwrap_err()
                .to_string();
                assert!(
                    error.contains(&format!("precision too large: {precision}, at most 10000")),
                    "{conversion}: {error}"
                );
            }
            for f in [1e308, 1e-308, 5e-324, -1.5, 0.0] {
                assert!(fmt(&format!("%{flag}.10000{conversion}"), Value::from(f)).is_ok());
            }
        }
        assert_eq!(fmt("%.10000f", Value::from(1)).unwrap().len(), 10_002);
        assert_eq!(fmt("%.70000d", Value::from(1)).unwrap().len(), 70_000);
        assert_eq!(fmt("%.70000s", Value::from("ab")).unwrap(), "ab");
    }
}
