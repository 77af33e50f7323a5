//! Resolvers built from `[dns] nameservers` (cached for delivery, uncached for checks that must
//! see DNS as it is now), and which addresses no public host has.

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use std::net::{IpAddr, SocketAddr};

/// Builds a caching resolver: the configured nameservers, or the system's.
pub fn resolver(nameservers: &[SocketAddr]) -> Result<TokioResolver, String> {
    build_resolver(nameservers, true)
}

/// Builds a resolver without a cache, for checks that must see DNS as it is now.
pub fn fresh_resolver(nameservers: &[SocketAddr]) -> Result<TokioResolver, String> {
    build_resolver(nameservers, false)
}

fn build_resolver(nameservers: &[SocketAddr], cache: bool) -> Result<TokioResolver, String> {
    let mut builder = if nameservers.is_empty() {
        TokioResolver::builder_tokio().map_err(|e| e.to_string())?
    } else {
        let servers = nameservers
            .iter()
            .map(|addr| {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }
                ns
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            TokioRuntimeProvider::default(),
        )
    };
    if !cache {
        builder.options_mut().cache_size = 0;
    }
    builder.build().map_err(|e| e.to_string())
}

/// True for addresses a public mail host never has: loopback, RFC 1918, shared (RFC 6598),
/// IETF protocol assignments (192.0.0.0/24), benchmarking (198.18.0.0/15), link-local,
/// site-local (fec0::/10) and unique-local, unspecified, broadcast, multicast and documentation
/// ranges; and IPv6 forms that carry an IPv4 address inside (IPv4-mapped, NAT64
/// `64:ff9b::/96` and `64:ff9b:1::/48`, 6to4 `2002::/16`), judged by that address: behind a
/// NAT64 gateway `64:ff9b::a00:1` reaches 10.0.0.1.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                IpAddr::V4(std::net::Ipv4Addr::new(
                    (hi >> 8) as u8,
                    hi as u8,
                    (lo >> 8) as u8,
                    lo as u8,
                ))
            };
            // NAT64: the well-known prefix (RFC 6052) with the IPv4 address in the last 32 bits;
            // the local-use prefix (RFC 8215) is a network of its operator's: all private.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return is_private(embedded(s[6], s[7]));
            }
            if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
                return true;
            }
            // IPv4-compatible (`::a.b.c.d`, deprecated) and SIIT (`::ffff:0:a.b.c.d`) forms.
            if (s[..6] == [0, 0, 0, 0, 0, 0] && (s[6] != 0 || s[7] > 1))
                || s[..6] == [0, 0, 0, 0, 0xffff, 0]
            {
                return is_private(embedded(s[6], s[7]));
            }
            // Teredo (`2001:0::/32`) hides an IPv4 address behind a relay: never a mail host.
            if s[0] == 0x2001 && s[1] == 0 {
                return true;
            }
            // 6to4: the IPv4 address in bits 16-47.
            if s[0] == 0x2002 {
                return is_private(embedded(s[1], s[2]));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                || (s[0] == 0x2001 && s[1] == 0x0db8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::",
            // The review's gaps: NAT64 and 6to4 around private IPv4, site-local, benchmarking,
            // IETF protocol assignments.
            "64:ff9b::a00:1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:0a00:0001::",
            "2002:c0a8:0101::1",
            "fec0::1",
            "198.18.0.1",
            "198.19.255.255",
            "192.0.0.8",
            "::7f00:1",
            "::ffff:0:a00:1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "172.32.0.1",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
            "198.20.0.1",
            "192.0.1.1",
        ] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }
}
