//! DKIM-in-DNS verification: a member DID earns `verified-mail-operator` when the DKIM records of
//! its sending domain are live in DNS and carry the relay's keys, and `relay-member` when it is
//! also approved and attested `relayMember: true`. Failed first checks retry with backoff;
//! verified subjects are checked again every `reverify_interval`; a definite failure (record
//! gone or changed, member suspended, attestation deleted) negates the labels.

use crate::txt::{Txt, TxtLookup};
use crate::{Labeler, LabelerError, now};
use atmos_lexicons::labels::{RELAY_MEMBER, VERIFIED_MAIL_OPERATOR};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Transient DNS failures tolerated before a verified subject loses its labels.
const TRANSIENT_GRACE: u32 = 3;
/// How often the relay's member changes are read.
const POLL: Duration = Duration::from_secs(1);
/// Cursor name for the relay's event log.
const EVENTS_CURSOR: &str = "relay_events";

/// Where a member stands with the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Pending,
    Active,
    Suspended,
}

/// One sending domain and the relay's DKIM keys for it: (selector, `p=` value).
#[derive(Debug, Clone)]
pub struct DomainKeys {
    pub domain: String,
    pub selectors: Vec<(String, String)>,
}

/// What the relay knows of a member.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub standing: Standing,
    pub domains: Vec<DomainKeys>,
}

/// The relay's members as the labeler sees them (implemented by the relay).
pub trait Directory: Send + Sync {
    /// The member with this DID, if any.
    fn member(&self, did: &str) -> Result<Option<MemberView>, String>;
    /// Member-affecting events after `after`: (event id, DID), oldest first.
    fn changes_since(&self, after: i64) -> Result<Vec<(i64, String)>, String>;
}

/// Result of one DNS check of a domain.
#[derive(Debug, PartialEq, Eq)]
enum DnsCheck {
    Match,
    /// Definite: missing record, other key, unknown selector.
    Mismatch(String),
    /// The resolver could not answer (timeout, SERVFAIL).
    Transient(String),
}

/// What a subject should carry now.
#[derive(Debug)]
struct Verdict {
    verified: bool,
    relay_member: bool,
    /// Why (for the audit reason and the log).
    why: String,
    /// The only failures were transient.
    transient: bool,
    /// Retrying could change the answer (a member waiting for its records).
    retry: bool,
}

/// Runs checks for due subjects.
pub struct Verifier {
    labeler: Arc<Labeler>,
    directory: Arc<dyn Directory>,
    resolver: Arc<dyn TxtLookup>,
}

/// The `p=` tag of a DKIM TXT value, whitespace removed.
pub fn dkim_p(txt: &str) -> Option<String> {
    txt.split(';').find_map(|tag| {
        let (k, v) = tag.split_once('=')?;
        (k.trim() == "p").then(|| v.chars().filter(|c| !c.is_whitespace()).collect())
    })
}

impl Verifier {
    /// A verifier resolving with `resolver` (use one without a cache: answers must be fresh).
    pub fn new(
        labeler: Arc<Labeler>,
        directory: Arc<dyn Directory>,
        resolver: Arc<dyn TxtLookup>,
    ) -> Self {
        Self {
            labeler,
            directory,
            resolver,
        }
    }

    /// Checks due subjects until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.sync_changes() {
                tracing::warn!(error = %e, "labeler: reading member changes failed");
            }
            match self.labeler.store.due(now(), 50) {
                Ok(due) => {
                    for (did, attempts) in due {
                        if let Err(e) = self.check(&did, attempts).await {
                            tracing::warn!(did, error = %e, "labeler: check failed");
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "labeler: reading the schedule failed"),
            }
            let next = self.labeler.store.next_due().ok().flatten();
            let wait = next
                .map(|at| {
                    Duration::from_millis((at - now()).clamp(0, POLL.as_millis() as i64) as u64)
                })
                .unwrap_or(POLL);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.labeler.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Schedules an immediate check of every DID the relay changed.
    fn sync_changes(&self) -> Result<(), String> {
        let store = &self.labeler.store;
        let cursor = store
            .cursor(EVENTS_CURSOR)
            .map_err(|e| e.to_string())?
            .unwrap_or(0);
        let changes = self.directory.changes_since(cursor)?;
        let Some((last, _)) = changes.last() else {
            return Ok(());
        };
        let now = now();
        for (_, did) in &changes {
            store.schedule(did, now, true).map_err(|e| e.to_string())?;
        }
        store
            .set_cursor(EVENTS_CURSOR, *last)
            .map_err(|e| e.to_string())
    }

    /// Checks one subject, publishes what changed and schedules the next check.
    pub async fn check(&self, did: &str, attempts: u32) -> Result<(), LabelerError> {
        let v = self.verdict(did).await;
        let s = &self.labeler.settings;
        let keep = v.transient && attempts + 1 < TRANSIENT_GRACE;
        let actor = "verifier";
        if !keep {
            self.labeler
                .apply(did, VERIFIED_MAIL_OPERATOR, v.verified, &v.why, actor)?;
            self.labeler.apply(
                did,
                RELAY_MEMBER,
                v.verified && v.relay_member,
                &v.why,
                actor,
            )?;
        }
        let (next, attempts) = if v.verified || !(v.retry || keep) {
            (s.reverify_interval, 0)
        } else {
            let exp = attempts.min(16);
            let delay = s.retry_base.saturating_mul(1 << exp).min(s.retry_max);
            (delay, attempts + 1)
        };
        tracing::debug!(did, verified = v.verified, relay_member = v.relay_member, why = %v.why, next = ?next, "labeler: checked");
        let now = now();
        self.labeler
            .store
            .checked(did, now, now + next.as_millis() as i64, attempts, &v.why)?;
        Ok(())
    }

    async fn verdict(&self, did: &str) -> Verdict {
        let no = |why: String, retry: bool| Verdict {
            verified: false,
            relay_member: false,
            why,
            transient: false,
            retry,
        };
        let member = match self.directory.member(did) {
            Ok(Some(m)) => m,
            Ok(None) => return no("not a relay member".into(), false),
            Err(e) => {
                return Verdict {
                    transient: true,
                    ..no(format!("member directory: {e}"), true)
                };
            }
        };
        if member.standing == Standing::Suspended {
            return no("member is suspended".into(), false);
        }
        let attestations = match self.labeler.store.attestations(did) {
            Ok(a) => a,
            Err(e) => {
                return Verdict {
                    transient: true,
                    ..no(format!("attestations: {e}"), true)
                };
            }
        };
        // What to check: the attested (domain, selectors); a member who never published an
        // attestation is checked on every selector the relay holds for its domains. Once one
        // was published, deleting it withdraws the claim.
        let claims: Vec<(String, Vec<String>, bool)> = match &attestations {
            None => member
                .domains
                .iter()
                .map(|d| {
                    (
                        d.domain.clone(),
                        d.selectors.iter().map(|s| s.0.clone()).collect(),
                        false,
                    )
                })
                .collect(),
            Some(list) if list.is_empty() => return no("attestation deleted".into(), false),
            Some(list) => list
                .iter()
                .map(|a| {
                    (
                        a.domain.clone(),
                        a.dkim_selectors.clone(),
                        a.relay_member == Some(true),
                    )
                })
                .collect(),
        };
        let mut reasons = Vec::new();
        let mut transient = true;
        let mut verified = false;
        let mut relay_member = false;
        for (domain, selectors, attested_member) in claims {
            let keys = member
                .domains
                .iter()
                .find(|d| d.domain.eq_ignore_ascii_case(&domain));
            match self.check_domain(&domain, &selectors, keys).await {
                DnsCheck::Match => {
                    verified = true;
                    relay_member |= attested_member && member.standing == Standing::Active;
                    reasons.push(format!("{domain}: DKIM records match"));
                }
                DnsCheck::Mismatch(why) => {
                    transient = false;
                    reasons.push(why);
                }
                DnsCheck::Transient(why) => reasons.push(why),
            }
        }
        Verdict {
            verified,
            relay_member,
            why: reasons.join("; "),
            transient: !verified && transient && !reasons.is_empty(),
            retry: true,
        }
    }

    async fn check_domain(
        &self,
        domain: &str,
        selectors: &[String],
        keys: Option<&DomainKeys>,
    ) -> DnsCheck {
        let Some(keys) = keys else {
            return DnsCheck::Mismatch(format!("{domain}: not a sending domain of this member"));
        };
        if selectors.is_empty() {
            return DnsCheck::Mismatch(format!("{domain}: no selectors"));
        }
        for sel in selectors {
            let Some((_, expected)) = keys.selectors.iter().find(|(s, _)| s == sel) else {
                return DnsCheck::Mismatch(format!("{domain}: selector {sel} is not a relay key"));
            };
            let name = format!("{sel}._domainkey.{}.", domain.trim_end_matches('.'));
            let found = match self.resolver.txt(&name).await {
                Txt::Found(records) => records,
                Txt::None => Vec::new(),
                Txt::Failed(e) => return DnsCheck::Transient(format!("{name}: {e}")),
            };
            let wanted: String = expected.chars().filter(|c| !c.is_whitespace()).collect();
            if !found
                .iter()
                .any(|t| dkim_p(t).as_deref() == Some(wanted.as_str()))
            {
                let what = if found.is_empty() {
                    "no DKIM record"
                } else {
                    "a different key"
                };
                return DnsCheck::Mismatch(format!("{name}: {what}"));
            }
        }
        DnsCheck::Match
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_tag_is_found_and_unfolded() {
        assert_eq!(
            dkim_p("v=DKIM1; k=rsa; p=MIIB AQ== ").as_deref(),
            Some("MIIBAQ==")
        );
        assert_eq!(dkim_p("v=DKIM1;p=").as_deref(), Some(""));
        assert_eq!(dkim_p("v=DKIM1; k=ed25519"), None);
    }
}
