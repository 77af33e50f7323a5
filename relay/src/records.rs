//! The DNS records a member or the operator must publish, as `member add` and `operator dns`
//! print them (name, type, value; long TXT values are split by the DNS provider).

use crate::config::Config;
use crate::dkim::keys::txt_value;
use crate::store::dkim_keys::DkimKeyRow;

pub use atmos_lexicons::api::DnsRecord;

fn record(name: String, kind: &str, value: String) -> DnsRecord {
    DnsRecord {
        name,
        kind: kind.into(),
        value,
        note: None,
    }
}

fn txt(name: String, value: String) -> DnsRecord {
    record(name, "TXT", value)
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

/// Everything a member publishes for `domain` (BEHAVIOUR §3 step 6).
pub fn member(config: &Config, did: &str, domain: &str, keys: &[DkimKeyRow]) -> Vec<DnsRecord> {
    let mut out = dkim(keys);
    out.push(txt(format!("_atmos.{domain}"), format!("did={did}")));
    out.extend(spf_and_dmarc(config, domain));
    out.push(record(
        domain.to_string(),
        "MX",
        format!("10 {}.", config.server.hostname),
    ));
    out
}

/// Everything the operator publishes for the pool domain. Every envelope sender (VERP) lives on
/// it, so it needs an MX (receivers that check the sender's domain, like Postfix's
/// `reject_unknown_sender_domain`, refuse mail from a domain without one), and the relay's host
/// name needs its addresses (the MX target, and SPF's `a:`).
pub fn operator(config: &Config, keys: &[DkimKeyRow]) -> Vec<DnsRecord> {
    let (domain, host) = (&config.server.operator_domain, &config.server.hostname);
    let mut out = dkim(keys);
    out.extend(spf_and_dmarc(config, domain));
    out.push(record(domain.clone(), "MX", format!("10 {host}.")));
    for (kind, family) in [("A", "IPv4"), ("AAAA", "IPv6")] {
        out.push(DnsRecord {
            note: Some(format!(
                "the public {family} address this relay sends from and receives on (server.hostname;                  needed by the MX above and by SPF's a:{host}){}",
                if kind == "AAAA" { "; only if it has one" } else { "" }
            )),
            ..record(host.clone(), kind, format!("<{family} address of {host}>"))
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_domain_gets_an_mx_and_the_host_its_addresses() {
        let mut config = Config::default();
        config.server.hostname = "smtp.pool.test".into();
        config.server.operator_domain = "pool.test".into();
        let recs = operator(&config, &[]);
        assert!(
            recs.iter().any(|r| r.name == "pool.test"
                && r.kind == "MX"
                && r.value == "10 smtp.pool.test.")
        );
        let a = recs.iter().find(|r| r.kind == "A").expect("A");
        assert_eq!(a.name, "smtp.pool.test");
        assert!(a.note.as_deref().unwrap_or_default().contains("IPv4"));
        assert!(recs.iter().any(|r| r.kind == "AAAA"));
    }
}
