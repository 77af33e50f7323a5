//! TXT lookups (handles, domain ownership, the DKIM/SPF/DMARC records a member publishes), on
//! the resolvers `delivery::mx` builds from `[dns] nameservers`.

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;

/// What a TXT lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Txt {
    /// The records, each one string joined from its parts.
    Found(Vec<String>),
    /// The name exists without TXT records, or does not exist.
    None,
    /// The lookup failed for now (timeout, SERVFAIL).
    Failed(String),
}

impl Txt {
    /// The records (none when absent or failed).
    pub fn records(&self) -> &[String] {
        match self {
            Self::Found(r) => r,
            _ => &[],
        }
    }
}

/// The TXT records at `name` (a trailing dot is added).
pub async fn txt(resolver: &TokioResolver, name: &str) -> Txt {
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    match resolver.txt_lookup(fqdn.as_str()).await {
        Ok(lookup) => Txt::Found(
            lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(t) => Some(
                        t.txt_data
                            .iter()
                            .map(|part| String::from_utf8_lossy(part))
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect(),
        ),
        Err(e) if e.is_nx_domain() || e.is_no_records_found() => Txt::None,
        Err(e) => Txt::Failed(e.to_string()),
    }
}
