//! The generic HMAC's `signed` template: literal text with `{body}`, `{url}`, `{method}` and
//! `{header:<Name>}` placeholders. A `{` always opens a placeholder; a `}` outside one is text.

use crate::{Delivery, Refusal};

/// One piece of a template.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Body,
    Url,
    Method,
    Header(&'a str),
}

const KNOWN: &str = "{body}, {url}, {method}, {header:<Name>}";

fn pieces(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let (text, after) = rest.split_at(open);
        if !text.is_empty() {
            out.push(Piece::Text(text));
        }
        let after = after.get(1..).unwrap_or_default();
        let Some(close) = after.find('}') else {
            return Err(format!("a `{{` is not closed (placeholders: {KNOWN})"));
        };
        let (name, tail) = after.split_at(close);
        out.push(match name {
            "body" => Piece::Body,
            "url" => Piece::Url,
            "method" => Piece::Method,
            _ => match name.strip_prefix("header:").map(str::trim) {
                Some(header)
                    if !header.is_empty()
                        && http::HeaderName::from_bytes(header.as_bytes()).is_ok() =>
                {
                    Piece::Header(header)
                }
                _ => {
                    let shown: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
                    return Err(format!(
                        "unknown placeholder `{{{shown}}}` (placeholders: {KNOWN})"
                    ));
                }
            },
        });
        rest = tail.get(1..).unwrap_or_default();
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

/// Checks a template when the policy is parsed.
pub(crate) fn check(template: &str) -> Result<(), String> {
    pieces(template).map(|_| ())
}

/// The bytes a template stands for with this delivery; a header it names must be present.
/// A template [`check`] refuses (only possible for a policy not made by `parse`) matches no
/// signature (`signature_header` names it).
pub(crate) fn render(
    template: &str,
    delivery: &Delivery<'_>,
    signature_header: &str,
) -> Result<Vec<u8>, Refusal> {
    let pieces =
        pieces(template).map_err(|_| Refusal::BadSignature(signature_header.to_owned()))?;
    let mut out = Vec::with_capacity(delivery.body.len() + 64);
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.extend_from_slice(text.as_bytes()),
            Piece::Body => out.extend_from_slice(delivery.body),
            Piece::Url => out.extend_from_slice(delivery.url.as_bytes()),
            Piece::Method => out.extend_from_slice(delivery.method.as_bytes()),
            Piece::Header(name) => match delivery.headers.get(name) {
                Some(value) if !value.is_empty() => out.extend_from_slice(value.as_bytes()),
                _ => return Err(Refusal::MissingHeader(name.to_owned())),
            },
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        assert_eq!(pieces("{body}").unwrap(), vec![Piece::Body]);
        assert_eq!(
            pieces("v0:{header:X-Ts}:{body}}").unwrap(),
            vec![
                Piece::Text("v0:"),
                Piece::Header("X-Ts"),
                Piece::Text(":"),
                Piece::Body,
                Piece::Text("}"),
            ]
        );
        assert_eq!(
            pieces("{method} {url}").unwrap(),
            vec![Piece::Method, Piece::Text(" "), Piece::Url]
        );
        assert!(
            pieces("{bodi}")
                .unwrap_err()
                .contains("unknown placeholder `{bodi}`")
        );
        assert!(pieces("{header:}").is_err());
        assert!(pieces("{header:bad name}").is_err());
        assert!(pieces("{body").unwrap_err().contains("not closed"));
        assert!(pieces("é{").is_err());
        assert_eq!(pieces("").unwrap(), vec![]);
    }
}
