//! The operator's pool-domain DKIM keys (BEHAVIOUR §13): made on first start, rotated on command,
//! old records kept listed for 48 hours so mail in flight still verifies.

use crate::config::Config;
use crate::dkim::keys::{KeyError, KeySet, Owner, rotate as rotate_keys};
use crate::records::{self, DnsRecord};
use crate::secrets::Secrets;
use crate::store::dkim_keys;
use crate::store::{Store, now_ms};

/// How long a retired operator key stays in the printed records.
pub const RETIRED_LISTING_MS: i64 = crate::dkim::keys::RECORD_OVERLAP_MS;

/// Makes the operator keys when there are none; returns true when it did.
pub fn ensure_keys(store: &Store, secrets: &Secrets, config: &Config) -> Result<bool, KeyError> {
    let domain = &config.server.operator_domain;
    if !store.with(|c| dkim_keys::active(c, domain))?.is_empty() {
        return Ok(false);
    }
    let set = KeySet::generate()?;
    let rows = store.write(|tx| {
        // Another process may have made them meanwhile.
        if !dkim_keys::active(tx, domain)?.is_empty() {
            return Ok(Vec::new());
        }
        Ok(rotate_keys(
            tx,
            secrets,
            domain,
            Owner::Operator,
            now_ms(),
            set,
            crate::dkim::keys::Switch::Now,
        )?)
    })?;
    for r in records::dkim(&rows) {
        tracing::info!(name = %r.name, value = %r.value, "operator_dkim.first_boot: publish this record");
    }
    Ok(!rows.is_empty())
}

/// New dated keys for the operator domain; the old ones stop signing now.
pub fn rotate(
    store: &Store,
    secrets: &Secrets,
    config: &Config,
) -> Result<Vec<DnsRecord>, KeyError> {
    let set = KeySet::generate()?;
    let rows = store.write(|tx| {
        Ok(rotate_keys(
            tx,
            secrets,
            &config.server.operator_domain,
            Owner::Operator,
            now_ms(),
            set,
            crate::dkim::keys::Switch::Now,
        )?)
    })?;
    Ok(records::dkim(&rows))
}

/// The operator's records: active keys, keys retired in the last 48 h, SPF and DMARC.
pub fn dns_records(store: &Store, config: &Config) -> Result<Vec<DnsRecord>, KeyError> {
    let since = now_ms() - RETIRED_LISTING_MS;
    let keys = store.with(|c| dkim_keys::published(c, &config.server.operator_domain, since))?;
    Ok(records::operator(config, &keys))
}
