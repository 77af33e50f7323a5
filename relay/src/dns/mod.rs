//! TXT lookups (handles, domain ownership, the DKIM/SPF/DMARC records a member publishes), on
//! the resolvers of `resolver.rs`, built from `[dns] nameservers`.
//!
//! Names under `localhost.` are asked of the first configured nameserver directly: resolver
//! libraries answer them locally (RFC 6761; hickory returns "no records" for TXT), and `atmos
//! dev` serves its demo and `*.localhost` domains from an embedded zone.

mod resolver;

pub use resolver::{fresh_resolver, is_private, resolver};

use futures_util::future::BoxFuture;
use hickory_resolver::TokioResolver;
use hickory_resolver::proto::op::{Edns, Message, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RecordType};
use std::net::SocketAddr;
use std::time::Duration;

pub use atmos_labeler::txt::{Txt, TxtLookup};

/// The relay's TXT lookups: an uncached resolver, and the nameserver to ask about `localhost.`
/// names.
#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
    local: Option<SocketAddr>,
}

impl Dns {
    /// Lookups through `nameservers` (empty: the system's resolver, and no `localhost.` zone).
    pub fn new(nameservers: &[SocketAddr]) -> Result<Self, String> {
        Ok(Self {
            resolver: fresh_resolver(nameservers)?,
            local: nameservers.first().copied(),
        })
    }

    /// The resolver, for other record types (MX for the DNS check).
    pub fn resolver(&self) -> &TokioResolver {
        &self.resolver
    }

    /// The TXT records at `name` (a trailing dot is added).
    pub async fn txt(&self, name: &str) -> Txt {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        match (self.local, Name::from_ascii(&fqdn)) {
            (Some(server), Ok(n))
                if Name::from_ascii("localhost.").is_ok_and(|l| l.zone_of(&n)) =>
            {
                direct_txt(server, n).await
            }
            _ => TxtLookup::txt(&self.resolver, &fqdn).await,
        }
    }
}

impl TxtLookup for Dns {
    fn txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Txt> {
        Box::pin(Dns::txt(self, name))
    }
}

/// One TXT query over UDP to `server` (hickory-proto's wire format, EDNS for large keys).
async fn direct_txt(server: SocketAddr, name: Name) -> Txt {
    let mut query = Message::query();
    query.add_query(Query::query(name, RecordType::TXT));
    query.metadata.recursion_desired = true;
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    query.edns = Some(edns);
    let Ok(bytes) = query.to_vec() else {
        return Txt::Failed("cannot encode the query".into());
    };
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let exchange = async {
        let socket = tokio::net::UdpSocket::bind(bind).await?;
        socket.connect(server).await?;
        socket.send(&bytes).await?;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = socket.recv(&mut buf).await?;
            if let Ok(reply) = Message::from_vec(&buf[..n])
                && reply.metadata.id == query.metadata.id
            {
                return Ok::<_, std::io::Error>(reply);
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(3), exchange).await {
        Ok(Ok(reply)) => match reply.metadata.response_code {
            // A truncated answer would read as "no record"; the dev zone's answers fit 4 KiB.
            ResponseCode::NoError if reply.metadata.truncation => {
                Txt::Failed(format!("{server}: truncated answer"))
            }
            ResponseCode::NoError => match Txt::from_rdata(reply.answers.iter().map(|r| &r.data)) {
                Txt::Found(r) if r.is_empty() => Txt::None,
                found => found,
            },
            ResponseCode::NXDomain => Txt::None,
            other => Txt::Failed(format!("{server}: {other}")),
        },
        Ok(Err(e)) => Txt::Failed(format!("{server}: {e}")),
        Err(_) => Txt::Failed(format!("{server}: timed out")),
    }
}

/// A DNS zone the relay serves itself and can publish a member's records into: `atmos dev`'s
/// embedded zone. The web side holds it as this trait, so production code never names dev
/// tooling.
pub trait ZonePublisher: Send + Sync {
    /// Whether the zone answers for `domain`.
    fn serves(&self, domain: &crate::address::Domain) -> bool;
    /// Publishes TXT records `(name, value)`.
    fn publish<'a>(&'a self, records: &'a [(String, String)]) -> BoxFuture<'a, ()>;
}
