//! The DNS records a member or the operator must publish, as `member add` and `operator dns`
//! print them (name, type, value; long TXT values are split by the DNS provider).

use crate::config::Config;
use crate::dkim::keys::txt_value;
use crate::store::dkim_keys::DkimKeyRow;
use serde::Serialize;

/// One DNS record to publish.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DnsRecord {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

fn txt(name: String, value: String) -> DnsRecord {
    DnsRecord {
        name,
        kind: "TXT".into(),
        value,
    }
}

/// `<selector>._domainkey.<domain> TXT "v=DKIM1; k=…; p=…"` for each key.
pub fn dkim(keys: &[DkimKeyRow]) -> Vec<DnsRecord> {
    keys.iter()
        .map(|k| {
            txt(
                format!("{}._domainkey.{}", k.selector, k.domain),
                txt_value(k),
            )
        })
        .collect()
}

fn spf_and_dmarc(config: &Config, domain: &str) -> [DnsRecord; 2] {
    [
        txt(
            domain.to_string(),
            format!("v=spf1 a:{} -all", config.server.hostname),
        ),
        txt(
            format!("_dmarc.{domain}"),
            format!(
                "v=DMARC1; p=reject; adkim=r; aspf=r; rua=mailto:postmaster@{}",
                config.server.operator_domain
            ),
        ),
    ]
}

/// Everything a member publishes for `domain` (SPEC §3 step 6).
pub fn member(config: &Config, did: &str, domain: &str, keys: &[DkimKeyRow]) -> Vec<DnsRecord> {
    let mut out = dkim(keys);
    out.push(txt(format!("_atmos.{domain}"), format!("did={did}")));
    out.extend(spf_and_dmarc(config, domain));
    out.push(DnsRecord {
        name: domain.to_string(),
        kind: "MX".into(),
        value: format!("10 {}.", config.server.hostname),
    });
    out
}

/// Everything the operator publishes for the pool domain.
pub fn operator(config: &Config, keys: &[DkimKeyRow]) -> Vec<DnsRecord> {
    let mut out = dkim(keys);
    out.extend(spf_and_dmarc(config, &config.server.operator_domain));
    out
}
