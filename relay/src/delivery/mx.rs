//! Where mail for a domain goes: MX lookup with hickory, implicit MX, null MX (RFC 7505).

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;
use std::net::IpAddr;

/// Why a domain has no usable mail host.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MxError {
    /// The domain publishes a null MX: it accepts no mail.
    #[error("556 5.1.10 domain {0} does not accept mail (null MX)")]
    NullMx(String),
    /// The domain does not exist.
    #[error("550 5.1.2 domain {0} not found")]
    NoSuchDomain(String),
    /// A lookup failed for now; try again later.
    #[error("451 4.4.3 DNS lookup for {domain} failed: {message}")]
    Temporary { domain: String, message: String },
}

impl MxError {
    /// True when retrying cannot help.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, Self::Temporary { .. })
    }
}

/// One mail host with its addresses, in preference order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailHost {
    pub name: String,
    pub addresses: Vec<IpAddr>,
}

/// Resolves the mail hosts of `domain`, most preferred first.
pub async fn resolve(resolver: &TokioResolver, domain: &str) -> Result<Vec<MailHost>, MxError> {
    let fqdn = format!("{}.", domain.trim_end_matches('.'));
    let temporary = |e: &dyn std::fmt::Display| MxError::Temporary {
        domain: domain.to_string(),
        message: e.to_string(),
    };
    let mut exchanges: Vec<(u16, String)> = match resolver.mx_lookup(fqdn.as_str()).await {
        Ok(lookup) => lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                _ => None,
            })
            .collect(),
        Err(e) if e.is_nx_domain() => return Err(MxError::NoSuchDomain(domain.to_string())),
        Err(e) if e.is_no_records_found() => Vec::new(),
        Err(e) => return Err(temporary(&e)),
    };
    // RFC 7505: a single MX of "." means the domain accepts no mail.
    if exchanges.len() == 1 && exchanges[0].1.trim_end_matches('.').is_empty() {
        return Err(MxError::NullMx(domain.to_string()));
    }
    exchanges.retain(|(_, name)| !name.trim_end_matches('.').is_empty());
    if exchanges.is_empty() {
        // RFC 5321 §5.1: no MX means the domain itself is the implicit MX.
        exchanges.push((0, fqdn.clone()));
    }
    exchanges.sort_by_key(|(pref, _)| *pref);
    let mut hosts = Vec::with_capacity(exchanges.len());
    let mut last_error = None;
    for (_, name) in exchanges {
        match resolver.lookup_ip(name.as_str()).await {
            Ok(ips) => {
                let addresses: Vec<IpAddr> = ips.iter().collect();
                if !addresses.is_empty() {
                    hosts.push(MailHost {
                        name: name.trim_end_matches('.').to_string(),
                        addresses,
                    });
                }
            }
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => {}
            Err(e) => last_error = Some(temporary(&e)),
        }
    }
    if hosts.is_empty() {
        return Err(last_error.unwrap_or_else(|| MxError::NoSuchDomain(domain.to_string())));
    }
    Ok(hosts)
}
