//! TXT lookups, as the verifier needs them: a trait, so the relay can hand the labeler its own
//! DNS (which also reaches `atmos dev`'s zone for `*.localhost`), and the plain resolver's
//! implementation.

use futures_util::future::BoxFuture;
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

    /// The TXT records among `data`, each joined from its strings.
    pub fn from_rdata<'a>(data: impl IntoIterator<Item = &'a RData>) -> Self {
        Self::Found(
            data.into_iter()
                .filter_map(|d| match d {
                    RData::TXT(t) => Some(
                        t.txt_data
                            .iter()
                            .map(|part| String::from_utf8_lossy(part))
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect(),
        )
    }
}

/// Something that answers TXT queries.
pub trait TxtLookup: Send + Sync {
    /// The TXT records at `name` (absolute or not; a trailing dot is added).
    fn txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Txt>;
}

impl TxtLookup for TokioResolver {
    fn txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Txt> {
        Box::pin(async move {
            let fqdn = format!("{}.", name.trim_end_matches('.'));
            match self.txt_lookup(fqdn.as_str()).await {
                Ok(lookup) => Txt::from_rdata(lookup.answers().iter().map(|r| &r.data)),
                Err(e) if e.is_nx_domain() || e.is_no_records_found() => Txt::None,
                Err(e) => Txt::Failed(e.to_string()),
            }
        })
    }
}
