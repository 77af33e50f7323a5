//! Member lifecycle (BEHAVIOUR §2): enrol with a sending domain, approve, suspend, reactivate.
//! Every transition writes its event in the same transaction.

use crate::auth;
use crate::config::Config;
use crate::dkim::keys::{KeyError, KeySet, Owner, Switch};
use crate::records::{self, DnsRecord};
use crate::secrets::Secrets;
use crate::store::dkim_keys::DkimKeyRow;
use crate::store::events::{self, NewEvent};
use crate::store::members::{self, Member, MemberState, SendingDomain};
use crate::store::{Store, StoreError, now_ms};
use rusqlite::Connection;
use serde::Serialize;

/// Why a lifecycle operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error("invalid DID {0:?}: expected did:plc:<24 base32 chars> or did:web:<host>")]
    InvalidDid(String),
    #[error("invalid domain {0}")]
    InvalidDomain(String),
    /// The operator domain, the relay's host name, or a name under either.
    #[error("{0} is reserved for the relay itself and cannot be enrolled")]
    Reserved(String),
    #[error("member {0} already exists")]
    AlreadyExists(String),
    #[error("domain {0} is already enrolled")]
    DomainTaken(String),
    #[error("member {did} already has {limit} sending domains, the most allowed")]
    DomainLimit { did: String, limit: u32 },
    #[error("no member {0}")]
    NotFound(String),
    #[error("invalid label {0:?}: 1-64 letters, digits, '_', '-' or ':'")]
    InvalidLabel(String),
    #[error("cannot {action} a member who is {state}")]
    InvalidTransition {
        action: &'static str,
        state: &'static str,
    },
    #[error("cannot hash the API key: {0}")]
    Hash(#[from] bcrypt::BcryptError),
    #[error("DKIM keys: {0}")]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `member add` prints: the key appears here and nowhere else.
#[derive(Debug, Serialize)]
pub struct AddedMember {
    pub did: String,
    /// The new member's key; `None` when a domain was added to an existing member (key unchanged).
    pub api_key: Option<String>,
    pub state: &'static str,
    pub dns_records: Vec<DnsRecord>,
    /// The new DKIM selectors (RSA, Ed25519), for the attestation record.
    #[serde(skip)]
    pub selectors: Vec<String>,
}

/// True for `did:plc:<24 base32>` and `did:web:<host>` (the shared strict grammar).
pub fn valid_did(did: &str) -> bool {
    atmos_lexicons::did::parse(did).is_ok()
}

/// Refuses the names the relay signs and receives for itself: a member holding the operator
/// domain would have its keys replace the pool keys every member's mail is signed with, and
/// the MX would forward the operator's mail to that member.
pub fn reserved(config: &Config, domain: &crate::address::Domain) -> Result<(), MemberError> {
    let s = &config.server;
    if domain.is_within(&s.operator_domain) || domain.is_within(&s.hostname) {
        return Err(MemberError::Reserved(domain.to_string()));
    }
    Ok(())
}

/// Enrols a member with one sending domain and a new API key.
#[allow(clippy::too_many_arguments)]
pub fn add(
    store: &Store,
    config: &Config,
    secrets: &Secrets,
    did: &str,
    domain: &str,
    handle: Option<&str>,
    approve: bool,
    actor: &str,
) -> Result<AddedMember, MemberError> {
    if !valid_did(did) {
        return Err(MemberError::InvalidDid(did.into()));
    }
    let domain = crate::address::Domain::parse(domain.trim())
        .map_err(|e| MemberError::InvalidDomain(format!("{domain:?} {e}")))?;
    reserved(config, &domain)?;
    let domain = domain.to_string();
    let keys = KeySet::generate()?;
    // An existing member keeps its key: no bcrypt for one that would be thrown away.
    let exists = store.with(|c| members::get(c, did))?.is_some();
    let (api_key, hash) = if exists {
        (String::new(), String::new())
    } else {
        let key = auth::generate_api_key();
        let hash = auth::hash_api_key(&key)?;
        (key, hash)
    };
    let now = now_ms();
    let state = if approve {
        MemberState::Active
    } else {
        MemberState::Pending
    };
    let limit = config.server.max_domains_per_member;
    let (is_new, dkim_rows) = store.write(|tx| {
        if members::domain_owner(tx, &domain)?.is_some() {
            return Ok(Err(MemberError::DomainTaken(domain.clone())));
        }
        let existing = members::get(tx, did)?;
        let is_new = match &existing {
            Some(_) => {
                if let Some(h) = handle {
                    members::release_handle(tx, h, did)?;
                    members::set_handle(tx, did, Some(h))?;
                }
                if members::domains_of(tx, did)?.len() as u32 >= limit {
                    return Ok(Err(MemberError::DomainLimit {
                        did: did.into(),
                        limit,
                    }));
                }
                // An existing member keeps its key; only the domain is added.
                false
            }
            // Removed meanwhile: this call made no key for a new member.
            None if hash.is_empty() => return Ok(Err(MemberError::NotFound(did.into()))),
            None => {
                // A handle belongs to one DID at a time: whoever held it before lost it.
                if let Some(h) = handle {
                    members::release_handle(tx, h, did)?;
                }
                members::insert(
                    tx,
                    &Member {
                        did: did.into(),
                        handle: handle.map(|h| h.trim().to_ascii_lowercase()),
                        state,
                        state_reason: None,
                        api_key_hash: hash.clone(),
                        hourly_limit: None,
                        daily_limit: None,
                        created_at: now,
                        approved_at: approve.then_some(now),
                    },
                )?;
                let mut event = NewEvent {
                    kind: "member_enrolled",
                    did: Some(did),
                    actor: Some(actor),
                    data: serde_json::json!({ "domain": domain }),
                    ..Default::default()
                };
                events::append(tx, now, &event)?;
                if approve {
                    event.kind = "member_approved";
                    events::append(tx, now, &event)?;
                }
                true
            }
        };
        // A second domain of an approved member is a new sending identity: the operator looks
        // at it first. A pending member's domains are reviewed with the member.
        let approved = !(config.server.review_added_domains
            && actor != "cli"
            && existing
                .as_ref()
                .is_some_and(|m| m.state != MemberState::Pending));
        members::insert_domain(
            tx,
            &SendingDomain {
                domain: domain.clone(),
                did: did.into(),
                forward_to: None,
                created_at: now,
                approved,
            },
        )?;
        if !is_new {
            events::append(
                tx,
                now,
                &NewEvent {
                    kind: "domain_added",
                    did: Some(did),
                    actor: Some(actor),
                    data: serde_json::json!({ "domain": domain, "approved": approved }),
                    ..Default::default()
                },
            )?;
        }
        let rows: Vec<DkimKeyRow> =
            crate::dkim::keys::rotate(tx, secrets, &domain, Owner::Member, now, keys, Switch::Now)?;
        Ok(Ok((is_new, rows)))
    })??;
    let current = store
        .with(|c| members::get(c, did))?
        .map(|m| m.state)
        .unwrap_or(state);
    Ok(AddedMember {
        did: did.into(),
        api_key: is_new.then_some(api_key),
        state: current.as_str(),
        dns_records: records::member(config, did, &domain, &dkim_rows),
        selectors: dkim_rows.iter().map(|r| r.selector.clone()).collect(),
    })
}

/// A new API key for `did` (returned once; only its bcrypt hash is kept). The old key stops
/// working at once: its hash is gone, so the login cache misses, and sessions that logged in
/// with it are refused at their next transaction.
pub fn new_key(store: &Store, did: &str, actor: &str) -> Result<String, MemberError> {
    // No bcrypt for a DID that is no member (anyone signed in can ask).
    if store.with(|c| members::get(c, did))?.is_none() {
        return Err(MemberError::NotFound(did.into()));
    }
    let key = auth::generate_api_key();
    let hash = auth::hash_api_key(&key)?;
    let now = now_ms();
    let found = store.write(|tx| {
        let found = members::set_api_key_hash(tx, did, &hash)?;
        if found {
            events::append(
                tx,
                now,
                &NewEvent {
                    kind: "api_key_regenerated",
                    did: Some(did),
                    actor: Some(actor),
                    ..Default::default()
                },
            )?;
        }
        Ok(found)
    })?;
    if !found {
        return Err(MemberError::NotFound(did.into()));
    }
    Ok(key)
}

/// An operator approves a domain an active member added; returns its owner.
pub fn approve_domain(store: &Store, domain: &str, actor: &str) -> Result<String, MemberError> {
    let domain = crate::address::Domain::parse(domain.trim())
        .map_err(|e| MemberError::InvalidDomain(format!("{domain:?} {e}")))?;
    let now = now_ms();
    store.write(|tx| {
        let Some((did, approved)) = members::domain_standing(tx, domain.as_str())? else {
            return Ok(Err(MemberError::NotFound(domain.to_string())));
        };
        if approved {
            return Ok(Err(MemberError::InvalidTransition {
                action: "approve",
                state: "approved",
            }));
        }
        members::approve_domain(tx, domain.as_str())?;
        events::append(
            tx,
            now,
            &NewEvent {
                kind: "domain_approved",
                did: Some(&did),
                actor: Some(actor),
                data: serde_json::json!({ "domain": domain.as_str() }),
                ..Default::default()
            },
        )?;
        Ok(Ok(did))
    })?
}

/// An operator or rule decision on a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Approve,
    Suspend,
    Reactivate,
}

impl Transition {
    fn name(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Suspend => "suspend",
            Self::Reactivate => "reactivate",
        }
    }

    fn event(self) -> &'static str {
        match self {
            Self::Approve => "member_approved",
            Self::Suspend => "member_suspended",
            Self::Reactivate => "member_reactivated",
        }
    }

    fn target(self, from: MemberState) -> Option<MemberState> {
        match (self, from) {
            (Self::Approve, MemberState::Pending) => Some(MemberState::Active),
            (Self::Suspend, MemberState::Pending | MemberState::Active) => {
                Some(MemberState::Suspended)
            }
            (Self::Reactivate, MemberState::Suspended) => Some(MemberState::Active),
            _ => None,
        }
    }
}

/// Applies a transition with its event; returns the new state.
pub fn transition(
    store: &Store,
    did: &str,
    t: Transition,
    actor: &str,
    reason: Option<&str>,
) -> Result<MemberState, MemberError> {
    store.write(|tx| transition_in(tx, did, t, actor, reason, now_ms()))?
}

/// [`transition`] inside the caller's transaction (the rules engine judges and acts in one).
pub fn transition_in(
    tx: &Connection,
    did: &str,
    t: Transition,
    actor: &str,
    reason: Option<&str>,
    now: i64,
) -> Result<Result<MemberState, MemberError>, StoreError> {
    let Some(m) = members::get(tx, did)? else {
        return Ok(Err(MemberError::NotFound(did.into())));
    };
    let Some(to) = t.target(m.state) else {
        return Ok(Err(MemberError::InvalidTransition {
            action: t.name(),
            state: m.state.as_str(),
        }));
    };
    members::set_state(tx, did, to, reason, now)?;
    events::append(
        tx,
        now,
        &NewEvent {
            kind: t.event(),
            did: Some(did),
            actor: Some(actor),
            data: serde_json::json!({ "reason": reason }),
            ..Default::default()
        },
    )?;
    Ok(Ok(to))
}

/// True for a label name an operator or a rule may use.
pub fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 64
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b':')
}

/// Adds (`expires_at` optional) or removes an internal label, with its event; returns whether
/// anything changed.
pub fn set_label(
    store: &Store,
    did: &str,
    label: &str,
    add: bool,
    expires_at: Option<i64>,
    actor: &str,
) -> Result<bool, MemberError> {
    let label = label.trim();
    if !valid_label(label) {
        return Err(MemberError::InvalidLabel(label.to_string()));
    }
    store.write(|tx| set_label_in(tx, did, label, add, expires_at, actor, now_ms()))?
}

/// [`set_label`] inside the caller's transaction.
pub fn set_label_in(
    tx: &Connection,
    did: &str,
    label: &str,
    add: bool,
    expires_at: Option<i64>,
    actor: &str,
    now: i64,
) -> Result<Result<bool, MemberError>, StoreError> {
    if members::get(tx, did)?.is_none() {
        return Ok(Err(MemberError::NotFound(did.into())));
    }
    let changed = if add {
        crate::store::labels::add(tx, did, label, expires_at, now)?;
        true
    } else {
        crate::store::labels::remove(tx, did, label)?
    };
    if changed {
        events::append(
            tx,
            now,
            &NewEvent {
                kind: if add {
                    "label_applied"
                } else {
                    "label_removed"
                },
                did: Some(did),
                actor: Some(actor),
                data: serde_json::json!({ "label": label, "expires_at": expires_at }),
                ..Default::default()
            },
        )?;
    }
    Ok(Ok(changed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    const DID: &str = "did:plc:abcdefghijklmnopqrstuvwx";

    #[test]
    fn did_and_domain_validation() {
        assert!(valid_did(DID));
        assert!(valid_did("did:web:example.com"));
        assert!(!valid_did("did:plc:short"));
        assert!(!valid_did("alice.test"));
    }

    #[test]
    fn add_and_transitions_write_events() {
        let (_d, store) = test_store();
        let config = Config::default();
        let secrets = Secrets::from_key(&[1; 32]);
        let added = add(
            &store,
            &config,
            &secrets,
            DID,
            "Example.COM",
            Some("alice.test"),
            false,
            "cli",
        )
        .unwrap();
        assert_eq!(added.state, "pending");
        assert!(
            added
                .api_key
                .as_deref()
                .is_some_and(|k| k.starts_with("atmos_"))
        );
        assert!(
            added
                .dns_records
                .iter()
                .any(|r| r.name == "_dmarc.example.com")
        );
        assert!(matches!(
            add(
                &store,
                &config,
                &secrets,
                DID,
                "example.com",
                None,
                false,
                "cli"
            ),
            Err(MemberError::DomainTaken(_))
        ));
        let second = add(
            &store,
            &config,
            &secrets,
            DID,
            "second.example",
            None,
            false,
            "cli",
        )
        .unwrap();
        assert!(
            second.api_key.is_none(),
            "an existing member's key is not shown or changed"
        );
        assert!(matches!(
            add(
                &store,
                &config,
                &secrets,
                DID,
                "third.example",
                None,
                false,
                "cli"
            ),
            Err(MemberError::DomainLimit { .. })
        ));
        assert!(matches!(
            transition(&store, DID, Transition::Reactivate, "cli", None),
            Err(MemberError::InvalidTransition { .. })
        ));
        assert_eq!(
            transition(&store, DID, Transition::Approve, "cli", None).unwrap(),
            MemberState::Active
        );
        assert_eq!(
            transition(&store, DID, Transition::Suspend, "cli", Some("spam")).unwrap(),
            MemberState::Suspended
        );
        assert_eq!(
            transition(&store, DID, Transition::Reactivate, "cli", None).unwrap(),
            MemberState::Active
        );
        let kinds: Vec<String> = store
            .with(|c| events::list(c, Some(DID), None, 10))
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                "member_reactivated",
                "member_suspended",
                "member_approved",
                "domain_added",
                "member_enrolled"
            ]
        );
        assert!(matches!(
            transition(
                &store,
                "did:plc:zzzzzzzzzzzzzzzzzzzzzzzz",
                Transition::Approve,
                "cli",
                None
            ),
            Err(MemberError::NotFound(_))
        ));
    }
}
