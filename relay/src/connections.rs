//! Caps on what one stranger can hold open: concurrent connections per listener and per client
//! network (an IPv4 address, or an IPv6 /64, which is what one subscriber usually gets). Both the
//! SMTP listeners and the HTTP listener ask before doing any work for a connection.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The network a client address stands for: the address itself for IPv4, its /64 for IPv6
/// (IPv4-mapped IPv6 addresses count as the IPv4 address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientNet(IpAddr);

impl ClientNet {
    /// The network of `ip`.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    Self(IpAddr::V6(std::net::Ipv6Addr::new(
                        s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                    )))
                }
            },
        }
    }
}

impl ClientNet {
    /// The wider network of `ip` for sign-ins: the address for IPv4, its /48 for IPv6 (what
    /// one site is usually given), so one subscriber's many /64s count as one.
    pub fn site(ip: IpAddr) -> Self {
        match Self::of(ip).0 {
            IpAddr::V6(v6) => {
                let s = v6.segments();
                Self(IpAddr::V6(std::net::Ipv6Addr::new(
                    s[0], s[1], s[2], 0, 0, 0, 0, 0,
                )))
            }
            v4 => Self(v4),
        }
    }
}

impl std::fmt::Display for ClientNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(ip) => write!(f, "{ip}"),
            IpAddr::V6(ip) => write!(f, "{ip}/64"),
        }
    }
}

/// An address range (`127.0.0.1/32`, `10.0.0.0/8`, `::1/128`; a bare address is its own
/// range), as `[http] trusted_proxies` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(ipnet::IpNet);

impl Cidr {
    /// Parses a CIDR or a single address.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(net) = text.parse::<ipnet::IpNet>() {
            return Ok(Self(net.trunc()));
        }
        text.parse::<IpAddr>()
            .map(|ip| Self(ipnet::IpNet::from(ip)))
            .map_err(|_| format!("{text:?} is not an address range such as 127.0.0.1/32"))
    }

    /// Whether `ip` (IPv4-mapped IPv6 counts as IPv4) is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The client of an HTTP request. Behind a reverse proxy in `trusted`, the socket peer is the
/// proxy: the client is the right-most `X-Forwarded-For` address that is not itself a trusted
/// proxy (each proxy appends the address it saw, so everything left of the last trusted hop is
/// whatever the client wrote). From any other peer the header is ignored.
pub fn client_address<'a>(
    peer: IpAddr,
    forwarded_for: impl Iterator<Item = &'a [u8]>,
    trusted: &[Cidr],
) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    // Element by element from the raw bytes: a client's unreadable bytes on the left must not
    // cost the entry the proxy appended on the right.
    let hops: Vec<&[u8]> = forwarded_for
        .flat_map(|v| v.split(|b| *b == b','))
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match std::str::from_utf8(hop).ok().and_then(parse_hop) {
            Some(ip) => {
                client = ip.to_canonical();
                if !is_trusted(client) {
                    return client;
                }
            }
            // Garbage left of a trusted hop: the last address a trusted proxy vouched for.
            None => return client,
        }
    }
    client
}

/// One `X-Forwarded-For` element: an address, possibly `[v6]`, `v4:port` or `[v6]:port`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sock) = hop.parse::<std::net::SocketAddr>() {
        return Some(sock.ip());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse().ok())
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("too many connections to this service, try again later")]
    Total,
    #[error("too many connections from your address, try again later")]
    PerClient,
}

struct Counts {
    total: usize,
    per_client: HashMap<ClientNet, usize>,
}

/// Counts open connections of one listener.
pub struct ConnectionLimiter {
    max_total: usize,
    max_per_client: usize,
    counts: Mutex<Counts>,
}

/// Holds one admitted connection's place; dropping it frees the place.
pub struct Admitted {
    limiter: Arc<ConnectionLimiter>,
    net: ClientNet,
}

impl ConnectionLimiter {
    /// A limiter allowing `max_total` connections, `max_per_client` from one client network.
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_client,
            counts: Mutex::new(Counts {
                total: 0,
                per_client: HashMap::new(),
            }),
        })
    }

    /// Admits a connection from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refused> {
        let net = ClientNet::of(ip);
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if c.total >= self.max_total {
            return Err(Refused::Total);
        }
        let n = c.per_client.entry(net).or_insert(0);
        if *n >= self.max_per_client {
            return Err(Refused::PerClient);
        }
        *n += 1;
        c.total += 1;
        Ok(Admitted {
            limiter: self.clone(),
            net,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts.lock().map(|c| c.total).unwrap_or(0)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut c = self
            .limiter
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_client.get_mut(&self.net) {
            *n -= 1;
            if *n == 0 {
                c.per_client.remove(&self.net);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_behind_trusted_proxies_is_the_last_untrusted_hop() {
        let trusted = [
            Cidr::parse("127.0.0.1/32").unwrap(),
            Cidr::parse("10.0.0.0/8").unwrap(),
        ];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let client = |peer: &str, xff: &[&str]| {
            client_address(ip(peer), xff.iter().map(|h| h.as_bytes()), &trusted)
        };
        // An untrusted peer: the header is ignored, whatever it says.
        assert_eq!(client("192.0.2.9", &["198.51.100.1"]), ip("192.0.2.9"));
        // Through one trusted proxy: what it appended.
        assert_eq!(client("127.0.0.1", &["203.0.113.5"]), ip("203.0.113.5"));
        // A client that wrote its own header: the proxy's entry is right-most and wins.
        assert_eq!(
            client("127.0.0.1", &["1.2.3.4, 5.6.7.8", "203.0.113.5"]),
            ip("203.0.113.5")
        );
        // Two trusted proxies in a row are skipped.
        assert_eq!(
            client("127.0.0.1", &["1.2.3.4, 203.0.113.5, 10.1.2.3"]),
            ip("203.0.113.5")
        );
        // Garbage or nothing: the last hop a trusted proxy vouched for.
        assert_eq!(client("127.0.0.1", &["junk, 10.1.2.3"]), ip("10.1.2.3"));
        assert_eq!(client("127.0.0.1", &[]), ip("127.0.0.1"));
        assert_eq!(
            client("::ffff:127.0.0.1", &["::ffff:203.0.113.5"]),
            ip("203.0.113.5")
        );
        // Unreadable bytes a client wrote do not hide the entry the proxy appended.
        assert_eq!(
            client_address(
                ip("127.0.0.1"),
                [&b"\xff\xfe, 203.0.113.7"[..]].into_iter(),
                &trusted
            ),
            ip("203.0.113.7")
        );
        assert_eq!(
            client("127.0.0.1", &["[2001:db8::1]:443"]),
            ip("2001:db8::1")
        );
        assert_eq!(
            client("127.0.0.1", &["203.0.113.8:5000"]),
            ip("203.0.113.8")
        );
        assert!(Cidr::parse("::1").unwrap().contains(ip("::1")));
        assert!(Cidr::parse("nope").is_err());
    }

    #[test]
    fn caps_total_and_per_client_network() {
        let l = ConnectionLimiter::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        let b_same_64: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let a1 = l.admit(a).unwrap();
        let _a2 = l.admit(a).unwrap();
        assert_eq!(l.admit(a).err(), Some(Refused::PerClient));
        let _b1 = l.admit(b).unwrap();
        assert_eq!(l.admit(b_same_64).err(), Some(Refused::Total));
        drop(a1);
        assert_eq!(l.open(), 2);
        let _b2 = l.admit(b_same_64).unwrap();
        assert_eq!(l.admit(b).err(), Some(Refused::Total));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(ClientNet::of(mapped), ClientNet::of(a));
        assert_eq!(ClientNet::of(b).to_string(), "2001:db8::/64");
    }
}
