//! A member's key rotation publishes first and switches later. New keys wait, listed with the
//! member's records but not signing, until DNS serves each of their records; then they sign and
//! the old keys retire (their records stay listed 48 h for mail in flight). Signing at once with
//! keys nobody can look up fails DKIM for every message until the member publishes, and under
//! `p=reject` that bounces the member's mail and trips the bounce rules.
//!
//! The check runs when the member looks at their records (`/api/domains/{d}/dns`) and every
//! `server.key_rollover_interval`, which also prunes member keys retired past the overlap.

use crate::dns::Dns;
use crate::store::dkim_keys::{self, DkimKeyRow};
use crate::store::{Store, StoreError, now_ms};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Whether DNS serves `key`'s record now (the same `p=`, whatever the spacing or splitting).
async fn served(dns: &Dns, key: &DkimKeyRow) -> bool {
    let name = format!("{}._domainkey.{}", key.selector, key.domain);
    let wanted: String = key
        .public_key
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    dns.txt(&name)
        .await
        .records()
        .iter()
        .any(|t| atmos_labeler::verification::dkim_p(t).as_deref() == Some(wanted.as_str()))
}

/// Makes `domain`'s pending keys sign once every one of their records is served; returns
/// whether it did.
pub async fn promote_if_published(
    store: &Store,
    dns: &Dns,
    domain: &str,
) -> Result<bool, StoreError> {
    let pending: Vec<DkimKeyRow> = store
        .with(|c| dkim_keys::current(c, domain))?
        .into_iter()
        .filter(|k| k.pending)
        .collect();
    if pending.is_empty() {
        return Ok(false);
    }
    for key in &pending {
        if !served(dns, key).await {
            return Ok(false);
        }
    }
    // By selector, not row id: SQLite may give a newer set the ids of the one it replaced.
    let checked: Vec<String> = pending.iter().map(|k| k.selector.clone()).collect();
    let now = now_ms();
    let promoted = store.write(|tx| {
        // The set checked is still the one waiting (no newer rotation replaced it meanwhile).
        let still: Vec<String> = dkim_keys::current(tx, domain)?
            .into_iter()
            .filter(|k| k.pending)
            .map(|k| k.selector)
            .collect();
        if still != checked {
            return Ok(false);
        }
        Ok(dkim_keys::promote_pending(tx, domain, now)? > 0)
    })?;
    if promoted {
        tracing::info!(domain, "dkim: rotated keys are in DNS and sign from now on");
    }
    Ok(promoted)
}

/// Every `interval`: promotes the pending keys DNS serves, and prunes member keys retired
/// past the overlap.
pub async fn run(store: Arc<Store>, dns: Dns, interval: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match store.with(|c| dkim_keys::domains_with_pending(c)) {
            Ok(domains) => {
                for domain in domains {
                    if let Err(e) = promote_if_published(&store, &dns, &domain).await {
                        tracing::warn!(domain, error = %e, "dkim: cannot promote rotated keys");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "dkim: cannot list rotated keys"),
        }
        let before = now_ms() - super::keys::RECORD_OVERLAP_MS;
        if let Err(e) = store.write(|tx| dkim_keys::prune_retired_member_keys(tx, before)) {
            tracing::warn!(error = %e, "dkim: cannot prune retired keys");
        }
    }
}
