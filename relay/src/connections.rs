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

impl std::fmt::Display for ClientNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(ip) => write!(f, "{ip}"),
            IpAddr::V6(ip) => write!(f, "{ip}/64"),
        }
    }
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
