//! The `http-request` runner: `core.http` sends one HTTP request.
//!
//! Result `{status_code, body, parsed, headers}` (`docs/st2-api.md` §4.4): `body` is the
//! decoded JSON when the response says `application/json` (and `parsed` is true), otherwise the
//! text. HTTP 200–206 is `succeeded`, any other status `failed`; the deadline (`timeout`
//! seconds, default 60) is `timeout` with `{"error"}`. Redirects are not followed unless
//! `allow_redirects`. The request carries `User-Agent: st2/v<version>` and
//! `X-Stanley-Action: <action name>`, as StackStorm's runner sends.
//!
//! Where a request may go is the operator's [`HttpPolicy`]: every address a URL names or its
//! host name resolves to, on the first request and on every redirect, is checked before a
//! connection is made. By default link-local addresses (`169.254.0.0/16`, `fe80::/10`, where
//! cloud metadata services answer) and the other known metadata addresses are refused, also
//! when a URL is templated from a webhook body.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde_json::{Map, Value, json};

use super::Outcome;
use stormhook_storage::ExecutionStatus;

/// Where `core.http` may connect: an address is refused when a `deny` entry covers it and no
/// `allow` entry does. Link-local and cloud metadata addresses ([`DEFAULT_DENY`]) are always
/// on the deny list; only an `allow` entry reopens them.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    deny: Vec<IpNet>,
    allow: Vec<IpNet>,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        Self::new(&[] as &[&str], &[] as &[&str]).expect("the default policy parses")
    }
}

/// What is always denied, unless allowed: link-local and the cloud metadata addresses.
pub const DEFAULT_DENY: &[&str] = &["link-local", "metadata"];

impl HttpPolicy {
    /// A policy that denies [`DEFAULT_DENY`] and `deny`, except `allow`. Entries are CIDR
    /// networks (`10.0.0.0/8`, `::1/128`), single addresses, or the names `loopback`,
    /// `private` (RFC 1918, carrier-grade NAT and IPv6 unique-local), `link-local`, `metadata`
    /// (cloud metadata services), `all`.
    ///
    /// # Errors
    ///
    /// An entry that is none of these, named.
    pub fn new<D: AsRef<str>, A: AsRef<str>>(deny: &[D], allow: &[A]) -> Result<Self, String> {
        let mut denied = parse_networks(DEFAULT_DENY)?;
        denied.extend(parse_networks(deny)?);
        Ok(Self {
            deny: denied,
            allow: parse_networks(allow)?,
        })
    }

    /// Whether `core.http` may connect to `ip`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        !self.deny.iter().any(|n| n.contains(&ip)) || self.allow.iter().any(|n| n.contains(&ip))
    }

    fn check(&self, ip: IpAddr) -> Result<(), Refused> {
        if self.allows(ip) {
            Ok(())
        } else {
            Err(Refused(ip.to_canonical()))
        }
    }
}

fn parse_networks<E: AsRef<str>>(entries: &[E]) -> Result<Vec<IpNet>, String> {
    let mut nets = Vec::new();
    for entry in entries {
        nets.extend(networks(entry.as_ref())?);
    }
    Ok(nets)
}

fn networks(entry: &str) -> Result<Vec<IpNet>, String> {
    let named: &[&str] = match entry.trim() {
        // 0.0.0.0 and :: reach the local host too.
        "loopback" => &["127.0.0.0/8", "::1/128", "0.0.0.0/8", "::/128"],
        "private" => &[
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "100.64.0.0/10",
            "fc00::/7",
        ],
        // With the same ranges seen through NAT64 (64:ff9b::/96) and 6to4 (2002::/16).
        "link-local" => &[
            "169.254.0.0/16",
            "fe80::/10",
            "64:ff9b::a9fe:0/112",
            "2002:a9fe::/32",
        ],
        // AWS, GCP, Azure, OpenStack (169.254.169.254, inside link-local too), AWS over IPv6,
        // Alibaba Cloud, Oracle Cloud.
        "metadata" => &[
            "169.254.169.254/32",
            "fd00:ec2::254/128",
            "100.100.100.200/32",
            "192.0.0.192/32",
        ],
        "all" => &["0.0.0.0/0", "::/0"],
        other => {
            let net = other
                .parse::<IpNet>()
                .or_else(|_| other.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    format!(
                        "{other:?} is not a network (CIDR such as 10.0.0.0/8, an address, or one of loopback, private, link-local, metadata, all)"
                    )
                })?;
            return Ok(vec![net]);
        }
    };
    Ok(named
        .iter()
        .map(|n| n.parse().expect("a built-in network parses"))
        .collect())
}

/// An address the policy refuses.
#[derive(Debug, thiserror::Error)]
#[error(
    "connecting to {0} is not allowed by this server's core.http policy (--http-deny/--http-allow)"
)]
struct Refused(IpAddr);

/// Resolves host names like the system does, then drops every address the policy refuses; a
/// name with only refused addresses fails.
struct PolicyResolver(Arc<HttpPolicy>);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = Arc::clone(&self.0);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match policy.check(a.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        refused = Some(e);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some(e)) => Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
                _ => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

/// The address a URL names literally (`http://169.254.169.254/`), which reqwest connects to
/// without resolving.
fn literal_ip(url: &reqwest::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

/// Largest response body kept.
const MAX_BODY_BYTES: usize = 4 << 20;

/// Sends the request `params` describe on behalf of action `action_name`, where `policy`
/// allows.
pub async fn run(
    params: &Map<String, Value>,
    action_name: &str,
    policy: &Arc<HttpPolicy>,
) -> Outcome {
    match send(params, action_name, policy).await {
        Ok(outcome) => outcome,
        Err(e) if e.is_timeout() => Outcome {
            status: ExecutionStatus::Timeout,
            result: json!({"error": format!("Request timed out: {e}")}),
        },
        Err(e) => Outcome::failed(json!({"error": error_chain(&e)})),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn send(
    params: &Map<String, Value>,
    action_name: &str,
    policy: &Arc<HttpPolicy>,
) -> Result<Outcome, reqwest::Error> {
    let Some(url) = params.get("url").and_then(Value::as_str) else {
        return Ok(Outcome::failed(
            json!({"error": "'url' is a required property"}),
        ));
    };
    let body = params.get("body").filter(|b| !b.is_null()).map(text);
    let method = params
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_ascii_uppercase)
        .unwrap_or_else(|| if body.is_some() { "POST" } else { "GET" }.to_owned());
    let Ok(method) = reqwest::Method::from_bytes(method.as_bytes()) else {
        return Ok(Outcome::failed(
            json!({"error": format!("invalid method {method:?}")}),
        ));
    };
    let timeout = params
        .get("timeout")
        .and_then(Value::as_f64)
        .filter(|t| t.is_finite() && *t > 0.0)
        .unwrap_or(60.0);
    if let Ok(parsed) = reqwest::Url::parse(url)
        && let Some(Err(refused)) = literal_ip(&parsed).map(|ip| policy.check(ip))
    {
        return Ok(Outcome::failed(json!({"error": refused.to_string()})));
    }
    let redirects = if params.get("allow_redirects").and_then(Value::as_bool) == Some(true) {
        let policy = Arc::clone(policy);
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 10 {
                return attempt.error("too many redirects");
            }
            match literal_ip(attempt.url()).map(|ip| policy.check(ip)) {
                Some(Err(refused)) => attempt.error(refused),
                _ => attempt.follow(),
            }
        })
    } else {
        reqwest::redirect::Policy::none()
    };
    let verify = params.get("verify_ssl_cert").and_then(Value::as_bool) != Some(false);
    let client = reqwest::Client::builder()
        .timeout(Duration::try_from_secs_f64(timeout).unwrap_or(Duration::from_secs(86_400)))
        .redirect(redirects)
        .danger_accept_invalid_certs(!verify)
        // A proxy would resolve the host itself, out of the policy's reach, so the proxy
        // environment variables are not followed.
        .no_proxy()
        .dns_resolver(Arc::new(PolicyResolver(Arc::clone(policy))))
        .user_agent(format!("st2/v{}", env!("CARGO_PKG_VERSION")))
        .build()?;
    let mut request = client
        .request(method, url)
        .header("X-Stanley-Action", action_name);
    if let Some(headers) = params.get("headers").and_then(Value::as_object) {
        for (k, v) in headers {
            request = request.header(k.as_str(), text(v));
        }
    }
    if let Some(query) = params.get("params").and_then(Value::as_object) {
        let pairs: Vec<(String, String)> =
            query.iter().map(|(k, v)| (k.clone(), text(v))).collect();
        request = request.query(&pairs);
    }
    if let Some(cookies) = params.get("cookies").and_then(Value::as_object)
        && !cookies.is_empty()
    {
        let header: Vec<String> = cookies
            .iter()
            .map(|(k, v)| format!("{k}={}", text(v)))
            .collect();
        request = request.header("Cookie", header.join("; "));
    }
    if let Some(user) = params.get("username").and_then(Value::as_str) {
        request = request.basic_auth(user, params.get("password").and_then(Value::as_str));
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let mut response = request.send().await?;
    let status = response.status().as_u16();
    let mut headers = Map::new();
    for (name, value) in response.headers() {
        headers.insert(
            name.as_str().to_owned(),
            json!(String::from_utf8_lossy(value.as_bytes())),
        );
    }
    let is_json = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/json"));
    let mut raw = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_BODY_BYTES.saturating_sub(raw.len());
        raw.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (body, parsed) = match is_json.then(|| serde_json::from_str::<Value>(&text)) {
        Some(Ok(v)) => (v, true),
        _ => (Value::String(text), false),
    };
    Ok(Outcome {
        status: if (200..=206).contains(&status) {
            ExecutionStatus::Succeeded
        } else {
            ExecutionStatus::Failed
        },
        result: json!({"status_code": status, "body": body, "parsed": parsed, "headers": headers}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn link_local_and_metadata_are_always_denied_unless_allowed() {
        for policy in [
            HttpPolicy::default(),
            HttpPolicy::new(&["private"], &[] as &[&str]).unwrap(),
        ] {
            for denied in [
                "169.254.169.254",
                "169.254.1.1",
                "fe80::1",
                "::ffff:169.254.169.254",
                "64:ff9b::a9fe:a9fe",
                "2002:a9fe:a9fe::1",
                "fd00:ec2::254",
                "100.100.100.200",
            ] {
                assert!(!policy.allows(ip(denied)), "{denied}");
            }
            assert!(policy.allows(ip("93.184.216.34")));
        }
        let default = HttpPolicy::default();
        assert!(default.allows(ip("127.0.0.1")) && default.allows(ip("10.1.2.3")));
        let reopened = HttpPolicy::new(&[] as &[&str], &["169.254.169.254"]).unwrap();
        assert!(reopened.allows(ip("169.254.169.254")));
        assert!(!reopened.allows(ip("169.254.169.253")));
    }

    #[test]
    fn loopback_covers_every_way_to_the_local_host() {
        let policy = HttpPolicy::new(&["loopback"], &[] as &[&str]).unwrap();
        for denied in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "0.0.0.0",
            "::",
            "::ffff:127.0.0.1",
        ] {
            assert!(!policy.allows(ip(denied)), "{denied}");
        }
        let only = HttpPolicy::new(&["all"], &["10.1.2.0/24"]).unwrap();
        assert!(only.allows(ip("10.1.2.7")));
        assert!(!only.allows(ip("10.1.3.7")) && !only.allows(ip("8.8.8.8")));
    }

    #[test]
    fn entries_that_are_not_networks_are_named() {
        let err = HttpPolicy::new(&["10.0.0.0/33"], &[] as &[&str]).unwrap_err();
        assert!(err.starts_with("\"10.0.0.0/33\" is not a network"), "{err}");
        assert!(HttpPolicy::new(&["intranet"], &[] as &[&str]).is_err());
    }
}
