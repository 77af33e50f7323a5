//! Each DNS record a member should publish, checked against what DNS serves now: the expected
//! value (pre-split into 255-byte TXT strings, the name absolute and relative to the domain),
//! what was observed, and a verdict — with advice when an SPF or DMARC record already exists.

use crate::address::Domain;
use crate::dns::{Dns, Txt};
use crate::records::DnsRecord;

pub use atmos_lexicons::api::RecordCheck;

/// Splits a TXT value into strings of at most 255 bytes (on character boundaries).
pub fn split_txt(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in value.chars() {
        if current.len() + c.len_utf8() > 255 {
            out.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    if !current.is_empty() || out.is_empty() {
        out.push(current);
    }
    out
}

fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Checks `expected` (as `records::member` lists them) for `domain`.
pub async fn check(
    dns: &Dns,
    domain: &Domain,
    expected: &[DnsRecord],
    hostname: &str,
) -> Vec<RecordCheck> {
    let mut out = Vec::new();
    for r in expected {
        let relative = if r.name == domain.as_str() {
            "@".to_string()
        } else {
            r.name
                .strip_suffix(&format!(".{domain}"))
                .unwrap_or(&r.name)
                .to_string()
        };
        let mut c = RecordCheck {
            name: r.name.clone(),
            relative_name: relative,
            kind: r.kind.clone(),
            value: r.value.clone(),
            strings: if r.kind == "TXT" {
                split_txt(&r.value)
            } else {
                vec![r.value.clone()]
            },
            observed: Vec::new(),
            status: "missing".into(),
            required: r.kind != "MX",
            advice: None,
        };
        if r.kind == "MX" {
            let found = dns.resolver().mx_lookup(format!("{}.", r.name)).await;
            c.observed = found
                .map(|l| {
                    l.answers()
                        .iter()
                        .filter_map(|a| match &a.data {
                            hickory_resolver::proto::rr::RData::MX(mx) => {
                                Some(format!("{} {}", mx.preference, mx.exchange))
                            }
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            let wanted = squash(&r.value);
            c.status = if c.observed.iter().any(|o| squash(o) == wanted) {
                "ok"
            } else {
                "optional"
            }
            .into();
            if c.status != "ok" {
                c.advice = Some("only needed to receive replies through the relay".into());
            }
            out.push(c);
            continue;
        }
        let found = dns.txt(&r.name).await;
        if let Txt::Failed(e) = &found {
            c.status = "lookup_failed".into();
            c.advice = Some(format!("the lookup failed ({e}); try again"));
            out.push(c);
            continue;
        }
        let wanted = squash(&r.value);
        let value_lower = r.value.to_ascii_lowercase();
        // SPF and DMARC share their name with other TXT records: compare only their own kind.
        let kind_prefix = ["v=spf1", "v=dmarc1", "v=dkim1"]
            .into_iter()
            .find(|p| value_lower.starts_with(p));
        c.observed = found
            .records()
            .iter()
            .filter(|o| kind_prefix.is_none_or(|p| o.trim().to_ascii_lowercase().starts_with(p)))
            .cloned()
            .collect();
        if c.observed.iter().any(|o| squash(o) == wanted) {
            c.status = "ok".into();
        } else if !c.observed.is_empty() {
            c.status = "different".into();
            c.advice = match kind_prefix {
                Some("v=spf1") => Some(format!(
                    "you already publish SPF: add a:{hostname} to it (before its -all or ~all) instead of a second SPF record"
                )),
                Some("v=dmarc1") => Some("you already publish DMARC; keep yours if it is at least as strict (p=quarantine or p=reject)".into()),
                _ => Some("the record differs from the expected value; replace it".into()),
            };
            if kind_prefix == Some("v=dmarc1") {
                c.required = false;
            }
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_txt_values_split_at_255_bytes() {
        let v = "p=".to_string() + &"A".repeat(400);
        let parts = split_txt(&v);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].len(), 255);
        assert_eq!(parts.concat(), v);
        assert_eq!(split_txt(""), vec![String::new()]);
    }
}
