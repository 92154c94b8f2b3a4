//! Helpers shared by the checks: HMACs, constant-time comparisons, lenient decoders, header
//! and query access, and RFC 3339 timestamps. Nothing here panics on any input.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use sha2::Digest as _;
use subtle::ConstantTimeEq;

use crate::{Algorithm, Delivery, Refusal};

/// Standard base64, padded or not (senders and secret generators differ), trailing bits
/// tolerated (Python's `b64decode`, which the Standard Webhooks libraries use, tolerates them).
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Standard base64, padded or not, for signatures.
const SIGNATURE_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes a signature written in standard base64 (padding optional).
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    SIGNATURE_BASE64.decode(text.trim()).ok()
}

/// Decodes a secret written in base64, leniently (padding optional, trailing bits allowed).
pub(crate) fn decode_base64_lenient(text: &[u8]) -> Option<Vec<u8>> {
    LENIENT_BASE64.decode(text).ok()
}

/// Encodes in standard padded base64.
#[cfg(test)]
pub(crate) fn encode_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes hex, upper or lower case.
pub(crate) fn decode_hex(text: &str) -> Option<Vec<u8>> {
    hex::decode(text.trim()).ok()
}

/// The HMAC of the concatenation of `parts` under `key`. HMAC takes keys of any length, so
/// this is `None` only in theory (the `hmac` crate's constructor is fallible in its type).
pub(crate) fn hmac(algorithm: Algorithm, key: &[u8], parts: &[&[u8]]) -> Option<Vec<u8>> {
    macro_rules! mac {
        ($digest:ty) => {{
            let mut mac = <Hmac<$digest> as Mac>::new_from_slice(key).ok()?;
            for part in parts {
                mac.update(part);
            }
            Some(mac.finalize().into_bytes().to_vec())
        }};
    }
    match algorithm {
        Algorithm::Sha1 => mac!(sha1::Sha1),
        Algorithm::Sha256 => mac!(sha2::Sha256),
        Algorithm::Sha512 => mac!(sha2::Sha512),
    }
}

/// HMAC-SHA256 of the concatenation of `parts`.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Option<Vec<u8>> {
    hmac(Algorithm::Sha256, key, parts)
}

/// The SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(bytes).into()
}

/// Constant-time equality of two byte strings of the same (public) length; different lengths
/// and empty strings are never equal (an empty signature must not match an empty MAC).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    !a.is_empty() && a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Constant-time equality of a presented token and a secret whose length is itself secret:
/// both are hashed first (SHA-256), so neither the comparison's time nor its early exit on a
/// length difference says anything about the secret's length or bytes.
pub(crate) fn token_eq(presented: &[u8], secret: &[u8]) -> bool {
    !presented.is_empty()
        && !secret.is_empty()
        && bool::from(sha256(presented).ct_eq(&sha256(secret)))
}

/// Whether `presented` equals one of `secrets` (see [`token_eq`]). Every secret is compared.
pub(crate) fn token_in(presented: &[u8], secrets: &[&[u8]]) -> bool {
    secrets
        .iter()
        .fold(false, |found, secret| found | token_eq(presented, secret))
}

/// Whether any presented signature equals any expected one, in constant time per pair; every
/// pair is compared (no early exit).
pub(crate) fn any_signature_matches(presented: &[Vec<u8>], expected: &[Vec<u8>]) -> bool {
    let mut found = subtle::Choice::from(0);
    for p in presented {
        for e in expected {
            if !p.is_empty() && p.len() == e.len() {
                found |= p.as_slice().ct_eq(e.as_slice());
            }
        }
    }
    found.into()
}

/// The non-empty signing secrets, or [`Refusal::NoSecret`].
pub(crate) fn signing_keys(secrets: &crate::Secrets) -> Result<Vec<&[u8]>, Refusal> {
    let keys: Vec<&[u8]> = secrets
        .signing
        .iter()
        .map(Vec::as_slice)
        .filter(|k| !k.is_empty())
        .collect();
    if keys.is_empty() {
        Err(Refusal::NoSecret)
    } else {
        Ok(keys)
    }
}

/// A header's value, trimmed, when present, non-empty and visible ASCII.
pub(crate) fn header_str<'a>(delivery: &Delivery<'a>, name: &str) -> Option<&'a str> {
    let value = delivery.headers.get(name)?.to_str().ok()?.trim();
    (!value.is_empty()).then_some(value)
}

/// A header's raw value, when present and non-empty.
pub(crate) fn header_bytes<'a>(delivery: &Delivery<'a>, name: &str) -> Option<&'a [u8]> {
    let value = delivery.headers.get(name)?.as_bytes();
    (!value.is_empty()).then_some(value)
}

/// A header the check needs: [`Refusal::MissingHeader`] when absent or empty,
/// [`Refusal::Malformed`] when not visible ASCII.
pub(crate) fn required_header<'a>(
    delivery: &Delivery<'a>,
    name: &str,
    expected: &str,
) -> Result<&'a str, Refusal> {
    let Some(value) = delivery.headers.get(name) else {
        return Err(Refusal::MissingHeader(name.to_owned()));
    };
    if value.as_bytes().iter().all(u8::is_ascii_whitespace) {
        return Err(Refusal::MissingHeader(name.to_owned()));
    }
    value
        .to_str()
        .map(str::trim)
        .map_err(|_| malformed(name, expected))
}

/// A [`Refusal::Malformed`].
pub(crate) fn malformed(header: &str, expected: &str) -> Refusal {
    Refusal::Malformed {
        header: header.to_owned(),
        expected: expected.to_owned(),
    }
}

/// `text` without `prefix`, compared ASCII-case-insensitively.
pub(crate) fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| text.get(prefix.len()..))
        .flatten()
}

/// Checks a Unix timestamp against `now` and the tolerance, either way.
pub(crate) fn check_timestamp(
    timestamp: i64,
    now: i64,
    tolerance: std::time::Duration,
    header: &str,
) -> Result<(), Refusal> {
    let tolerance_secs = tolerance.as_secs();
    if now.abs_diff(timestamp) > tolerance_secs {
        Err(Refusal::Expired {
            header: header.to_owned(),
            tolerance_secs,
        })
    } else {
        Ok(())
    }
}

/// A Unix timestamp in seconds: ASCII digits, optionally signed, nothing else.
pub(crate) fn parse_unix(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The query string of a URL (after the first `?`, before any `#`), empty when none.
pub(crate) fn query_of(url: &str) -> &str {
    let Some((_, query)) = url.split_once('?') else {
        return "";
    };
    query.split_once('#').map_or(query, |(q, _)| q)
}

/// The first value of a query parameter, decoded (`+` is a space, `%xx` a byte).
pub(crate) fn query_param(url: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query_of(url).as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Parses an RFC 3339 date-time (`2019-11-16T10:11:12.634234626Z`, `...+02:00`) into Unix
/// seconds (fractions dropped).
pub(crate) fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.trim().as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(
            digits
                .iter()
                .fold(0i64, |n, d| n * 10 + i64::from(d - b'0')),
        )
    };
    let sep = |i: usize, allowed: &[u8]| b.get(i).is_some_and(|c| allowed.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b.get(i + 3) == Some(&b':') => {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let minutes = h * 60 + m;
            if *sign == b'+' { minutes } else { -minutes }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset * 60)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Whether `haystack` contains `needle`.
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2019-11-16T10:11:12.634234626Z"),
            Some(1_573_899_072)
        );
        assert_eq!(
            parse_rfc3339("2019-11-16T12:11:12+02:00"),
            Some(1_573_899_072)
        );
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
        for bad in [
            "",
            "2019-11-16",
            "2019-11-16T10:11:12",
            "2019-13-16T10:11:12Z",
            "2019-02-30T10:11:12Z",
            "2019-11-16T10:11:12.Z",
            "2019-11-16T10:11:12Zjunk",
            "2019-11-16T10:11:12+0200",
            "é019-11-16T10:11:12Z",
            "2019-11-16T10:11:1é",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn comparisons() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(!ct_eq(b"", b""));
        assert!(token_eq(b"token", b"token"));
        assert!(!token_eq(b"token", b"token2"));
        assert!(!token_eq(b"", b""));
        assert!(token_in(b"b", &[b"a", b"b"]));
        assert!(!token_in(b"c", &[b"a", b"b"]));
        assert!(!any_signature_matches(&[Vec::new()], &[Vec::new()]));
    }

    #[test]
    fn queries_and_prefixes() {
        assert_eq!(query_of("https://h/p?a=1&b=2#f"), "a=1&b=2");
        assert_eq!(query_of("https://h/p"), "");
        assert_eq!(
            query_param("https://h/p?validationToken=a%3A+b%20c", "validationToken").as_deref(),
            Some("a: b c")
        );
        assert_eq!(strip_prefix_ignore_case("SHA256=ab", "sha256="), Some("ab"));
        assert_eq!(strip_prefix_ignore_case("sé", "sha256="), None);
        assert_eq!(strip_prefix_ignore_case("ééééé", "sha"), None);
        assert_eq!(parse_unix("1531420618"), Some(1_531_420_618));
        assert_eq!(parse_unix("+1"), None);
        assert_eq!(parse_unix("99999999999999999999"), None);
        assert_eq!(parse_unix("-"), None);
    }
}
