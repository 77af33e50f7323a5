//! Proof that a DID owns a sending domain: `_atmos.<domain>` or `_atproto.<domain>` TXT
//! `did=<DID>`, looked up at the moment of the check.
//!
//! Only DNS proves a mail domain. Mail authority lives in DNS (MX, SPF, DKIM, DMARC), so the
//! proof is the same power: whoever can publish `_atmos` can publish the DKIM records too. A
//! handle equal to the domain is not enough on its own: a handle can be verified by
//! `https://<domain>/.well-known/atproto-did`, which proves control of a web server (a hosting
//! provider, an agency, a shared `*.bsky.social`-style host), not of the domain's mail; and a
//! handle published in DNS is exactly the `_atproto` record checked here.

use crate::address::Domain;
use crate::dns::{Dns, Txt};

pub use atmos_lexicons::api::{Observed, OwnershipCheck};

/// Checks `did`'s claim to `domain` against DNS now.
pub async fn check(dns: &Dns, did: &str, domain: &Domain) -> OwnershipCheck {
    let expected_value = format!("did={did}");
    let mut out = OwnershipCheck {
        domain: domain.to_string(),
        proven: false,
        via: None,
        expected_name: domain.under("_atmos"),
        expected_value: expected_value.clone(),
        observed: Vec::new(),
    };
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
