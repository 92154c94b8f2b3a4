//! Which resolved addresses a plugin may reach without naming them, and the resolver.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::sync::Arc;

/// At most this many addresses of one name are checked and tried.
pub const MAX_ADDRESSES: usize = 16;

/// The future a [`Resolver`] returns.
pub type ResolveFuture = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>;

/// Resolves a host name (never an IP literal) to its addresses. The default one
/// ([`system_resolver`]) asks the system; tests inject their own.
pub type Resolver = Arc<dyn Fn(&str) -> ResolveFuture + Send + Sync>;

/// The system's resolver (`getaddrinfo`, through tokio).
pub fn system_resolver() -> Resolver {
    Arc::new(|host: &str| {
        let host = host.to_owned();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|a| a.ip()).take(MAX_ADDRESSES).collect())
        })
    })
}

/// `localhost` and the names under `.localhost` are the loopback addresses, whatever the
/// resolver says (RFC 6761).
pub(super) fn loopback_name(name: &str) -> Option<Vec<IpAddr>> {
    (name == "localhost" || name.ends_with(".localhost")).then(|| {
        vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ]
    })
}

/// Why `ip` may not be reached unless the grant names it, or `None` for a public address.
pub(super) fn restricted(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => restricted_v4(ip),
        IpAddr::V6(ip) => restricted_v6(ip),
    }
}

fn restricted_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, _, _] = ip.octets();
    Some(if ip.is_unspecified() || a == 0 {
        "unspecified"
    } else if ip.is_loopback() {
        "loopback"
    } else if ip.is_private() {
        "private"
    } else if ip == Ipv4Addr::new(169, 254, 169, 254) {
        "cloud metadata"
    } else if ip.is_link_local() {
        "link-local"
    } else if a == 100 && (b & 0xc0) == 64 {
        "shared (CGNAT)"
    } else if ip.is_broadcast() {
        "broadcast"
    } else if ip.is_multicast() {
        "multicast"
    } else if a >= 240 {
        "reserved"
    } else {
        return None;
    })
}

/// AWS's instance metadata service over IPv6.
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254);

fn restricted_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    // Addresses that carry an IPv4 address: judged by it. IPv4-mapped (::ffff:0:0/96),
    // IPv4-compatible (::/96), NAT64 (64:ff9b::/96) and 6to4 (2002::/16).
    let embedded =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return restricted_v4(v4);
    }
    if segments[..6] == [0; 6] {
        return restricted_v4(embedded(segments[6], segments[7]));
    }
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return restricted_v4(embedded(segments[6], segments[7]));
    }
    if segments[0] == 0x2002 {
        return restricted_v4(embedded(segments[1], segments[2]));
    }
    Some(if ip == AWS_METADATA_V6 {
        "cloud metadata"
    } else if (segments[0] & 0xfe00) == 0xfc00 {
        "private"
    } else if (segments[0] & 0xffc0) == 0xfe80 {
        "link-local"
    } else if (segments[0] & 0xffc0) == 0xfec0 {
        "private (site-local)"
    } else if ip.is_multicast() {
        "multicast"
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(ip: &str) -> Option<&'static str> {
        restricted(ip.parse().unwrap())
    }

    #[test]
    fn restricted_ranges_are_named() {
        let cases = [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "cloud metadata"),
            ("169.254.1.1", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("255.255.255.255", "broadcast"),
            ("100.64.0.1", "shared (CGNAT)"),
            ("100.127.255.255", "shared (CGNAT)"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fc00::1", "private"),
            ("fd12:3456::1", "private"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "private (site-local)"),
            ("ff02::1", "multicast"),
            ("fd00:ec2::254", "cloud metadata"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("::ffff:169.254.169.254", "cloud metadata"),
            ("::127.0.0.1", "loopback"),
            ("64:ff9b::a9fe:a9fe", "cloud metadata"),
            ("64:ff9b::c0a8:0101", "private"),
            ("2002:7f00:1::", "loopback"),
            ("2002:0a00:0001::", "private"),
        ];
        for (ip, want) in cases {
            assert_eq!(class(ip), Some(want), "{ip}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "172.15.255.255",
            "100.128.0.1",
            "100.63.255.255",
            "169.255.0.1",
            "192.169.0.1",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::",
        ] {
            assert_eq!(class(ip), None, "{ip}");
        }
    }

    #[test]
    fn localhost_names_are_loopback() {
        for name in ["localhost", "api.localhost"] {
            let addrs = loopback_name(name).unwrap();
            assert!(addrs.iter().all(|a| a.is_loopback()), "{addrs:?}");
        }
        assert_eq!(loopback_name("localhost.example.com"), None);
        assert_eq!(loopback_name("notlocalhost"), None);
    }
}
