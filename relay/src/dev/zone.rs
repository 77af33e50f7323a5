//! The DNS zone `atmos dev` embeds (BEHAVIOUR §14): an authoritative in-memory `localhost.` zone on
//! loopback (hickory-server), to which the enrollment wizard can publish a demo domain's
//! ownership and DKIM records, so the whole flow — ownership, DKIM check, labels — works on one
//! machine. Every other name is forwarded to the system's resolvers, so real handles still
//! resolve.

use crate::address::Domain;
use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::{SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::forwarder::ForwardZoneHandler;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// The zone the dev relay serves.
pub const ORIGIN: &str = "localhost.";

/// The running zone.
pub struct DevZone {
    zone: Arc<InMemoryZoneHandler<TokioRuntimeProvider>>,
    serial: AtomicU32,
    /// Where it answers (UDP and TCP).
    pub addr: SocketAddr,
}

impl DevZone {
    /// Starts the zone on a free loopback port.
    pub async fn start() -> Result<Arc<Self>, String> {
        let origin = Name::from_str(ORIGIN).map_err(|e| e.to_string())?;
        let zone = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
            origin.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
        );
        let soa = SOA::new(
            Name::from_str("ns.localhost.").map_err(|e| e.to_string())?,
            Name::from_str("hostmaster.localhost.").map_err(|e| e.to_string())?,
            1,
            3600,
            600,
            86_400,
            1,
        );
        zone.upsert(Record::from_rdata(origin.clone(), 60, RData::SOA(soa)), 1)
            .await;
        let zone = Arc::new(zone);
        let mut catalog = Catalog::new();
        catalog.upsert(
            LowerName::from(&origin),
            vec![zone.clone() as Arc<dyn ZoneHandler>],
        );
        match ForwardZoneHandler::builder(TokioRuntimeProvider::default()).and_then(|b| b.build()) {
            Ok(forwarder) => {
                catalog.upsert(
                    LowerName::from(&Name::root()),
                    vec![Arc::new(forwarder) as Arc<dyn ZoneHandler>],
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "dev zone: no system resolver to forward other names to")
            }
        }
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let addr = udp.local_addr().map_err(|e| e.to_string())?;
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| e.to_string())?;
        let mut server = Server::new(catalog);
        server.register_socket(udp);
        server.register_listener(tcp, std::time::Duration::from_secs(5), 65_535);
        tokio::spawn(async move {
            if let Err(e) = server.block_until_done().await {
                tracing::warn!(error = %e, "dev zone stopped");
            }
        });
        tracing::info!(%addr, "dev DNS zone for *.localhost");
        Ok(Arc::new(Self {
            zone,
            serial: AtomicU32::new(1),
            addr,
        }))
    }

    /// Publishes TXT records `(name, value)` under `localhost.`.
    pub async fn publish(&self, records: &[(String, String)]) {
        let serial = self.serial.fetch_add(1, Ordering::Relaxed) + 1;
        let records: Vec<Record> = records
            .iter()
            .filter(|(name, _)| name.ends_with(".localhost"))
            .filter_map(|(name, value)| {
                let name = Name::from_str(&format!("{name}.")).ok()?;
                let strings = crate::enrollment::dnscheck::split_txt(value);
                Some(Record::from_rdata(name, 60, RData::TXT(TXT::new(strings))))
            })
            .collect();
        for r in records {
            self.zone.upsert(r, serial).await;
        }
    }
}

impl crate::dns::ZonePublisher for DevZone {
    fn serves(&self, domain: &Domain) -> bool {
        domain.as_str().ends_with(".localhost")
    }

    fn publish<'a>(
        &'a self,
        records: &'a [(String, String)],
    ) -> futures_util::future::BoxFuture<'a, ()> {
        Box::pin(DevZone::publish(self, records))
    }
}
