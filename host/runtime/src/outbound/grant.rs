//! `allowed_outbound_hosts`: the URLs an action may call, in Spin's syntax.
//!
//! An entry is `scheme://host[:port]`:
//! - `scheme` is `http`, `https` or `*` (either);
//! - `host` is a name (`api.example.com`), `*.` and a name (any subdomain of it, not the name
//!   itself, as in Spin), `*` (any host), an IPv4 literal or a bracketed IPv6 literal;
//! - `port` is a number, a range `8000-8099`, or `*` (any). Without a port only the scheme's
//!   default port is allowed (80 for `http`, 443 for `https`; for `*` the default of the scheme
//!   the request uses).
//!
//! A trailing `/` is accepted; a path, a query, a fragment or userinfo is refused.

use std::net::IpAddr;

/// At most this many entries in one `allowed_outbound_hosts` list.
pub const MAX_ENTRIES: usize = 64;
/// At most this many bytes in one entry.
pub const MAX_ENTRY_BYTES: usize = 300;

/// The parsed `allowed_outbound_hosts` of one action. The default grant allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundGrant {
    entries: Vec<Entry>,
}

/// The scheme of an outbound request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub(super) fn parse(scheme: &str) -> Option<Scheme> {
        if scheme.eq_ignore_ascii_case("http") {
            Some(Scheme::Http)
        } else if scheme.eq_ignore_ascii_case("https") {
            Some(Scheme::Https)
        } else {
            None
        }
    }

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    pub(super) fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// The host of an outbound request, normalized: lowercase, no brackets, no trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Host {
    Name(String),
    Ip(IpAddr),
}

impl Host {
    /// Normalizes a URL's host (`Example.COM.`, `[::1]`, `127.0.0.1`). `None` if it is empty.
    pub(super) fn parse(host: &str) -> Option<Host> {
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Some(Host::Ip(ip.to_canonical()));
        }
        let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        (!name.is_empty()).then_some(Host::Name(name))
    }
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    scheme: Option<Scheme>,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    /// `*.example.com`, stored as `.example.com`.
    Subdomains(String),
    Name(String),
    Ip(IpAddr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortPattern {
    Any,
    /// The default port of the request's scheme.
    Default,
    Range(u16, u16),
}

impl OutboundGrant {
    /// The grant that allows nothing (an action without `allowed_outbound_hosts`).
    pub fn none() -> OutboundGrant {
        OutboundGrant::default()
    }

    /// Parses an action's `allowed_outbound_hosts`. The error names the entry at fault.
    pub fn parse(entries: &[String]) -> Result<OutboundGrant, String> {
        if entries.len() > MAX_ENTRIES {
            return Err(format!(
                "allowed_outbound_hosts has {} entries, more than the limit of {MAX_ENTRIES}",
                entries.len()
            ));
        }
        let entries = entries
            .iter()
            .map(|entry| {
                Entry::parse(entry).map_err(|why| {
                    format!(
                        "allowed_outbound_hosts entry {:?}: {why}",
                        shorten(entry, MAX_ENTRY_BYTES)
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(OutboundGrant { entries })
    }

    /// Whether the grant allows nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a request to `scheme://host:port` is allowed by some entry. `scheme` is `http` or
    /// `https` (any case); `host` may be a name, an IP literal, or a bracketed IPv6 literal.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        match (Scheme::parse(scheme), Host::parse(host)) {
            (Some(scheme), Some(host)) => self.allows_target(scheme, &host, port),
            _ => false,
        }
    }

    pub(super) fn allows_target(&self, scheme: Scheme, host: &Host, port: u16) -> bool {
        self.entries
            .iter()
            .any(|e| e.matches_scheme_port(scheme, port) && e.host.matches(host))
    }

    /// Whether the grant names `ip` itself for this scheme and port: an IP literal entry equal to
    /// it, or a `localhost` entry when it is a loopback address. A wildcard host (`*`) names
    /// nothing.
    pub(super) fn names_address(&self, scheme: Scheme, ip: IpAddr, port: u16) -> bool {
        let ip = ip.to_canonical();
        self.entries.iter().any(|e| {
            e.matches_scheme_port(scheme, port)
                && match &e.host {
                    HostPattern::Ip(named) => *named == ip,
                    HostPattern::Name(name) => name == "localhost" && ip.is_loopback(),
                    HostPattern::Any | HostPattern::Subdomains(_) => false,
                }
        })
    }
}

impl Entry {
    fn parse(entry: &str) -> Result<Entry, String> {
        if entry.len() > MAX_ENTRY_BYTES {
            return Err(format!("longer than {MAX_ENTRY_BYTES} bytes"));
        }
        let entry = entry.trim();
        let Some((scheme, rest)) = entry.split_once("://") else {
            return Err("a scheme is required (http://, https:// or *://)".into());
        };
        let scheme = match scheme {
            "*" => None,
            s => Some(
                Scheme::parse(s)
                    .ok_or_else(|| format!("unsupported scheme {s:?} (use http, https or *)"))?,
            ),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if let Some(c) = rest.chars().find(|c| matches!(c, '/' | '?' | '#' | '@')) {
            return Err(format!(
                "only scheme://host[:port] is allowed, found {c:?} after the host"
            ));
        }
        let (host, port) = split_host_port(rest)?;
        Ok(Entry {
            scheme,
            host: HostPattern::parse(host)?,
            port: PortPattern::parse(port)?,
        })
    }

    fn matches_scheme_port(&self, scheme: Scheme, port: u16) -> bool {
        self.scheme.is_none_or(|s| s == scheme)
            && match self.port {
                PortPattern::Any => true,
                PortPattern::Default => port == scheme.default_port(),
                PortPattern::Range(low, high) => (low..=high).contains(&port),
            }
    }
}

/// Splits `host[:port]`, where an IPv6 host is bracketed.
fn split_host_port(rest: &str) -> Result<(&str, Option<&str>), String> {
    if rest.starts_with('[') {
        let Some(end) = rest.find(']') else {
            return Err("an IPv6 address needs its closing bracket".into());
        };
        let (host, after) = rest.split_at(end + 1);
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(format!("unexpected {after:?} after the IPv6 address")),
            },
        };
    }
    match rest.split_once(':') {
        Some((_, port)) if port.contains(':') => {
            Err("an IPv6 address must be in brackets, as in http://[::1]:8080".into())
        }
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((rest, None)),
    }
}

impl HostPattern {
    fn parse(host: &str) -> Result<HostPattern, String> {
        if host.is_empty() {
            return Err("the host is empty".into());
        }
        if host == "*" {
            return Ok(HostPattern::Any);
        }
        if let Some(inner) = host.strip_prefix('[') {
            let inner = inner.strip_suffix(']').unwrap_or(inner);
            return match inner.parse::<std::net::Ipv6Addr>() {
                Ok(ip) => Ok(HostPattern::Ip(IpAddr::V6(ip).to_canonical())),
                Err(_) => Err(format!("{inner:?} is not an IPv6 address")),
            };
        }
        if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
            return Ok(HostPattern::Ip(IpAddr::V4(ip)));
        }
        if let Some(domain) = host.strip_prefix("*.") {
            let domain = valid_name(domain)?;
            return Ok(HostPattern::Subdomains(format!(".{domain}")));
        }
        Ok(HostPattern::Name(valid_name(host)?))
    }

    fn matches(&self, host: &Host) -> bool {
        match (self, host) {
            (HostPattern::Any, _) => true,
            (HostPattern::Subdomains(suffix), Host::Name(name)) => {
                name.len() > suffix.len() && name.ends_with(suffix.as_str())
            }
            (HostPattern::Name(pattern), Host::Name(name)) => pattern == name,
            (HostPattern::Ip(pattern), Host::Ip(ip)) => pattern == ip,
            _ => false,
        }
    }
}

/// A DNS name: labels of letters, digits, `-` and `_`, each at most 63 bytes, 253 in all.
/// Returned lowercase, without a trailing dot.
fn valid_name(name: &str) -> Result<String, String> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if name.is_empty() || name.len() > 253 {
        return Err(format!("{name:?} is not a host name"));
    }
    for label in name.split('.') {
        if label.is_empty()
            || label.len() > 63
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(if label.contains('*') {
                format!("{name:?}: a wildcard is allowed only as a leading \"*.\" or as \"*\"")
            } else {
                format!("{name:?} is not a host name")
            });
        }
    }
    Ok(name)
}

impl PortPattern {
    fn parse(port: Option<&str>) -> Result<PortPattern, String> {
        let Some(port) = port else {
            return Ok(PortPattern::Default);
        };
        if port == "*" {
            return Ok(PortPattern::Any);
        }
        let number = |s: &str| {
            s.parse::<u16>()
                .ok()
                .filter(|p| *p != 0 && s.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| format!("{port:?} is not a port, a port range or *"))
        };
        match port.split_once('-') {
            Some((low, high)) => {
                let (low, high) = (number(low)?, number(high)?);
                if low > high {
                    return Err(format!("the port range {port:?} is empty"));
                }
                Ok(PortPattern::Range(low, high))
            }
            None => {
                let port = number(port)?;
                Ok(PortPattern::Range(port, port))
            }
        }
    }
}

/// `text` cut to at most `max` bytes (at a character boundary), with `…` when cut.
pub(super) fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(entries: &[&str]) -> OutboundGrant {
        let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        OutboundGrant::parse(&entries).unwrap()
    }

    fn parse_error(entry: &str) -> String {
        OutboundGrant::parse(&[entry.to_owned()]).unwrap_err()
    }

    #[test]
    fn an_exact_host_allows_its_scheme_and_default_port_only() {
        let g = grant(&["https://api.example.com"]);
        assert!(g.allows("https", "api.example.com", 443));
        assert!(g.allows("HTTPS", "API.Example.com.", 443));
        assert!(!g.allows("https", "api.example.com", 8443));
        assert!(!g.allows("http", "api.example.com", 80));
        assert!(!g.allows("http", "api.example.com", 443));
        assert!(!g.allows("https", "example.com", 443));
        assert!(!g.allows("https", "evil.api.example.com", 443));
        assert!(!g.allows("ftp", "api.example.com", 443));
    }

    #[test]
    fn an_explicit_port_replaces_the_default_one() {
        let g = grant(&["https://api.example.com:8443", "http://localhost:3000"]);
        assert!(g.allows("https", "api.example.com", 8443));
        assert!(!g.allows("https", "api.example.com", 443));
        assert!(g.allows("http", "localhost", 3000));
        assert!(!g.allows("http", "localhost", 3001));
    }

    #[test]
    fn a_subdomain_wildcard_matches_subdomains_but_not_the_domain() {
        let g = grant(&["https://*.slack.com", "http://*.example.com"]);
        assert!(g.allows("https", "hooks.slack.com", 443));
        assert!(g.allows("https", "a.b.slack.com", 443));
        assert!(!g.allows("https", "slack.com", 443));
        assert!(!g.allows("https", "evilslack.com", 443));
        assert!(!g.allows("http", "hooks.slack.com", 80));
        assert!(g.allows("http", "www.example.com", 80));
        assert!(!g.allows("http", "127.0.0.1", 80));
    }

    #[test]
    fn wildcard_scheme_host_and_port() {
        let g = grant(&["*://example.com:*"]);
        assert!(g.allows("http", "example.com", 1));
        assert!(g.allows("https", "example.com", 65535));
        assert!(!g.allows("https", "www.example.com", 443));

        let g = grant(&["*://example.com"]);
        assert!(g.allows("http", "example.com", 80));
        assert!(g.allows("https", "example.com", 443));
        assert!(!g.allows("http", "example.com", 443));

        let g = grant(&["https://*:*"]);
        assert!(g.allows("https", "anything.test", 1234));
        assert!(g.allows("https", "10.0.0.1", 443));
        assert!(!g.allows("http", "anything.test", 1234));
    }

    #[test]
    fn port_ranges() {
        let g = grant(&["http://example.com:8000-8002"]);
        assert!(g.allows("http", "example.com", 8000));
        assert!(g.allows("http", "example.com", 8002));
        assert!(!g.allows("http", "example.com", 8003));
        assert!(!g.allows("http", "example.com", 80));
    }

    #[test]
    fn ip_literals_match_by_address() {
        let g = grant(&["http://127.0.0.1:8080", "http://[::1]:9000"]);
        assert!(g.allows("http", "127.0.0.1", 8080));
        assert!(g.allows("http", "[::1]", 9000));
        assert!(g.allows("http", "[0:0::1]", 9000));
        assert!(g.allows("http", "::1", 9000));
        assert!(!g.allows("http", "127.0.0.2", 8080));
        assert!(!g.allows("http", "localhost", 8080));
        assert!(!g.allows("http", "[::1]", 8080));
    }

    #[test]
    fn an_address_is_named_by_an_ip_entry_or_localhost_only() {
        let g = grant(&[
            "http://127.0.0.1:8080",
            "http://localhost:3000",
            "http://*:*",
            "https://[fd00:ec2::254]",
        ]);
        let v4 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(g.names_address(Scheme::Http, v4("127.0.0.1"), 8080));
        assert!(!g.names_address(Scheme::Https, v4("127.0.0.1"), 8080));
        assert!(!g.names_address(Scheme::Http, v4("127.0.0.1"), 8081));
        assert!(g.names_address(Scheme::Http, v4("127.0.0.9"), 3000));
        assert!(g.names_address(Scheme::Http, v4("::1"), 3000));
        assert!(g.names_address(Scheme::Http, v4("::ffff:127.0.0.1"), 8080));
        assert!(!g.names_address(Scheme::Http, v4("10.0.0.1"), 3000));
        assert!(!g.names_address(Scheme::Http, v4("10.0.0.1"), 80));
        assert!(g.names_address(Scheme::Https, v4("fd00:ec2::254"), 443));
    }

    #[test]
    fn the_empty_grant_allows_nothing() {
        assert!(OutboundGrant::none().is_empty());
        assert!(!OutboundGrant::none().allows("https", "example.com", 443));
        assert!(OutboundGrant::parse(&[]).unwrap().is_empty());
        assert!(!grant(&["https://example.com"]).is_empty());
    }

    #[test]
    fn bad_entries_are_refused_with_the_entry_named() {
        let cases = [
            ("example.com", "a scheme is required"),
            ("ftp://example.com", "unsupported scheme \"ftp\""),
            ("https://", "the host is empty"),
            ("https://:443", "the host is empty"),
            ("https://example.com/path", "only scheme://host[:port]"),
            ("https://example.com?q=1", "only scheme://host[:port]"),
            ("https://user@example.com", "only scheme://host[:port]"),
            ("https://example.com:0", "is not a port"),
            ("https://example.com:65536", "is not a port"),
            ("https://example.com:+80", "is not a port"),
            ("https://example.com:9-8", "is empty"),
            ("https://example.com:http", "is not a port"),
            ("https://::1", "must be in brackets"),
            ("https://[::1", "closing bracket"),
            ("https://[::1]x", "after the IPv6 address"),
            ("https://[nope]:80", "is not an IPv6 address"),
            ("https://api.*.com", "a wildcard is allowed only"),
            ("https://*example.com", "a wildcard is allowed only"),
            ("https://exa mple.com", "is not a host name"),
            ("https://a..b", "is not a host name"),
        ];
        for (entry, want) in cases {
            let err = parse_error(entry);
            assert!(err.contains(want), "{entry}: {err}");
            assert!(err.contains(&format!("{entry:?}")), "{entry}: {err}");
        }
        assert!(parse_error(&"a".repeat(400)).contains("longer than 300 bytes"));
        let many: Vec<String> = (0..65).map(|i| format!("https://h{i}.test")).collect();
        assert!(
            OutboundGrant::parse(&many)
                .unwrap_err()
                .contains("more than the limit of 64")
        );
        let err = OutboundGrant::parse(&["https://ok.test".into(), "nope".into()]).unwrap_err();
        assert!(err.contains("\"nope\""), "{err}");
    }

    #[test]
    fn a_trailing_slash_is_accepted() {
        assert!(grant(&["https://example.com/"]).allows("https", "example.com", 443));
    }
}
