//! Proof that a DID owns a sending domain (SPEC §3.2): `_atmos.<domain>` or `_atproto.<domain>`
//! TXT `did=<DID>`, or the DID's verified handle is the domain itself.

use crate::address::Domain;
use crate::dns::{Dns, Txt};

pub use atmos_lexicons::api::{Observed, OwnershipCheck};

/// Checks `did`'s claim to `domain`; `handle` is the DID's verified handle, if any.
pub async fn check(dns: &Dns, did: &str, handle: Option<&str>, domain: &Domain) -> OwnershipCheck {
    let expected_value = format!("did={did}");
    let mut out = OwnershipCheck {
        domain: domain.to_string(),
        proven: false,
        via: None,
        expected_name: domain.under("_atmos"),
        expected_value: expected_value.clone(),
        observed: Vec::new(),
    };
    if handle.is_some_and(|h| h.eq_ignore_ascii_case(domain.as_str())) {
        out.proven = true;
        out.via = Some("handle".into());
        return out;
    }
    for label in ["_atmos", "_atproto"] {
        let name = domain.under(label);
        let found = dns.txt(&name).await;
        let records = found.records().to_vec();
        let matches = records.iter().any(|r| r.trim() == expected_value);
        out.observed.push(Observed {
            name,
            records,
            error: match found {
                Txt::Failed(e) => Some(e),
                _ => None,
            },
        });
        if matches && !out.proven {
            out.proven = true;
            out.via = Some(label.into());
        }
    }
    out
}
