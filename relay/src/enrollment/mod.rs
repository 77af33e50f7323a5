//! Self-service enrollment (BEHAVIOUR §3): a signed-in DID proves a sending domain through DNS, gets
//! DKIM keys with dated selectors and (once) an API key, and the relay writes an
//! `email.atmos.attestation` record to the member's own repo with the member's OAuth session.
//! Also: removing a domain (keys and attestation go), re-enrolling (keys rotated, attestation
//! updated), regenerating the API key. The member is `pending` until an operator approves.
//!
//! The relay's rows are written first and the attestation second; when the PDS refuses, the
//! rows are taken back, so a domain is either enrolled and attested or not enrolled.

pub mod dnscheck;
pub mod ownership;

use crate::address::Domain;
use crate::config::Config;
use crate::members::{self, AddedMember, MemberError};
use crate::secrets::Secrets;
use crate::store::events::{self, NewEvent};
use crate::store::{Store, StoreError, dkim_keys, members as member_rows, now_ms};
use atmos_lexicons::{ATTESTATION_NSID, Attestation};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The member's handle as resolved at the moment of an enrollment.
#[derive(Debug, Clone, Copy)]
pub enum HandleNow<'a> {
    /// The DID resolved: its handle (that resolves back to it), or none.
    Resolved(Option<&'a str>),
    /// The DID could not be resolved just now: whatever is stored stays.
    Unknown,
}

/// The member's repo, written through their OAuth session.
pub trait Repo: Send + Sync {
    /// `com.atproto.repo.putRecord`; returns the record's URI.
    fn put_record<'a>(
        &'a self,
        collection: &'a str,
        rkey: &'a str,
        record: serde_json::Value,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;
    /// `com.atproto.repo.deleteRecord`.
    fn delete_record<'a>(
        &'a self,
        collection: &'a str,
        rkey: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
    /// `com.atproto.repo.getRecord`: the record's value, `None` when there is none.
    fn get_record<'a>(
        &'a self,
        collection: &'a str,
        rkey: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Option<serde_json::Value>, String>> + Send + 'a>>;
}

/// Why an enrollment step was refused; each has a stable code for the JSON API.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("domain: {0}")]
    InvalidDomain(String),
    #[error("{domain} is not proven yours: publish {name} TXT \"did={did}\" and try again")]
    NotProven {
        domain: String,
        name: String,
        did: String,
        /// Boxed: the check is large and errors travel by value.
        check: Box<ownership::OwnershipCheck>,
    },
    #[error("{0} is already enrolled with this relay")]
    Taken(String),
    #[error("you already have {limit} sending domains, the most this relay allows")]
    Limit { limit: u32 },
    #[error("{0} is not one of your sending domains")]
    NotYours(String),
    #[error("your PDS did not store the attestation record: {0}")]
    Attestation(String),
    /// Too many of this costly call, from this account or from everyone at once.
    #[error("{what}: try again in {retry_after} s")]
    RateLimited {
        what: &'static str,
        retry_after: u64,
    },
    #[error("internal error, try again")]
    Internal,
}

impl EnrollError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidDomain(_) => "INVALID_REQUEST",
            Self::NotProven { .. } => "DOMAIN_NOT_PROVEN",
            Self::Taken(_) => "DOMAIN_TAKEN",
            Self::Limit { .. } => "DOMAIN_LIMIT",
            Self::NotYours(_) => "NOT_FOUND",
            Self::Attestation(_) => "ATTESTATION_FAILED",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::Internal => "INTERNAL",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidDomain(_) | Self::NotProven { .. } => 400,
            Self::Taken(_) | Self::Limit { .. } => 409,
            Self::NotYours(_) => 404,
            Self::Attestation(_) => 502,
            Self::RateLimited { .. } => 429,
            Self::Internal => 500,
        }
    }
}

impl From<StoreError> for EnrollError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "enrollment: store error");
        Self::Internal
    }
}

pub use atmos_lexicons::api::Enrolled;

/// The enrollment service.
pub struct Enrollment {
    store: Arc<Store>,
    secrets: Arc<Secrets>,
    config: Arc<Config>,
    dns: crate::dns::Dns,
    labeler: Option<Arc<atmos_labeler::Labeler>>,
}

/// 429 while the key pool is full.
fn busy() -> EnrollError {
    EnrollError::RateLimited {
        what: "the relay is making many keys right now",
        retry_after: 10,
    }
}

/// The actor recorded on events a member causes through the web.
const ACTOR: &str = "member";

impl Enrollment {
    /// The service over the relay's store; `dns` must not cache (checks see DNS as it is).
    pub fn new(
        store: Arc<Store>,
        secrets: Arc<Secrets>,
        config: Arc<Config>,
        dns: crate::dns::Dns,
        labeler: Option<Arc<atmos_labeler::Labeler>>,
    ) -> Self {
        Self {
            store,
            secrets,
            config,
            dns,
            labeler,
        }
    }

    /// The configuration it enrolls under.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn parse(domain: &str) -> Result<Domain, EnrollError> {
        Domain::parse(domain.trim())
            .map_err(|e| EnrollError::InvalidDomain(format!("{domain:?} {e}")))
    }

    /// Whether `did` has proven `domain` through DNS, now.
    pub async fn ownership(
        &self,
        did: &str,
        domain: &str,
    ) -> Result<ownership::OwnershipCheck, EnrollError> {
        let domain = Self::parse(domain)?;
        members::reserved(&self.config, &domain)
            .map_err(|e| EnrollError::InvalidDomain(e.to_string()))?;
        Ok(ownership::check(&self.dns, did, &domain).await)
    }

    /// Enrolls `domain` for the signed-in `did`: ownership, keys, API key (new members),
    /// attestation, `pending`. `handle` is the DID's handle resolved just now (`None` when it
    /// has none that resolves back): stored for SMTP login by handle, and taken from any member
    /// who held it before.
    pub async fn add_domain(
        &self,
        did: &str,
        handle_now: HandleNow<'_>,
        domain: &str,
        repo: &dyn Repo,
    ) -> Result<Enrolled, EnrollError> {
        let domain = Self::parse(domain)?;
        members::reserved(&self.config, &domain)
            .map_err(|e| EnrollError::InvalidDomain(e.to_string()))?;
        let handle = match handle_now {
            HandleNow::Resolved(h) => h,
            HandleNow::Unknown => None,
        };
        let (owner, count) = self.store.with(|c| {
            Ok((
                member_rows::domain_owner(c, domain.as_str())?,
                member_rows::domains_of(c, did)?.len(),
            ))
        })?;
        if owner.is_some() {
            return Err(EnrollError::Taken(domain.to_string()));
        }
        let limit = self.config.server.max_domains_per_member;
        if count as u32 >= limit {
            return Err(EnrollError::Limit { limit });
        }
        let check = ownership::check(&self.dns, did, &domain).await;
        if !check.proven {
            return Err(EnrollError::NotProven {
                name: check.expected_name.clone(),
                domain: domain.to_string(),
                did: did.to_string(),
                check: Box::new(check),
            });
        }
        let added = self.enrol_rows(did, handle, &domain).await?;
        if let HandleNow::Resolved(None) = handle_now {
            // No handle resolves to this DID now: whatever was stored is stale.
            self.store
                .write(|tx| member_rows::set_handle(tx, did, None))?;
        }
        match self.attest(repo, did, &domain, &added.selectors).await {
            Ok(uri) => Ok(Enrolled {
                domain: domain.to_string(),
                api_key: added.api_key,
                state: added.state.to_string(),
                selectors: added.selectors,
                attestation: uri,
                dns_records: added.dns_records,
            }),
            Err(e) => {
                // Take the rows back: a domain is enrolled and attested, or neither.
                let created = added.api_key.is_some();
                self.undo(did, &domain, created)?;
                Err(e)
            }
        }
    }

    /// The member and domain rows (RSA keygen and bcrypt are slow: on the bounded key pool).
    async fn enrol_rows(
        &self,
        did: &str,
        handle: Option<&str>,
        domain: &Domain,
    ) -> Result<AddedMember, EnrollError> {
        let (store, config, secrets) = (
            self.store.clone(),
            self.config.clone(),
            self.secrets.clone(),
        );
        let (did, handle, domain) = (
            did.to_string(),
            handle.map(str::to_string),
            domain.to_string(),
        );
        crate::dkim::keys::generate_bounded(move || {
            members::add(
                &store,
                &config,
                &secrets,
                &did,
                &domain,
                handle.as_deref(),
                false,
                ACTOR,
            )
        })
        .await
        .map_err(|_| busy())?
        .map_err(|e| match e {
            MemberError::DomainTaken(d) => EnrollError::Taken(d),
            MemberError::DomainLimit { limit, .. } => EnrollError::Limit { limit },
            MemberError::InvalidDomain(d) => EnrollError::InvalidDomain(d),
            e @ MemberError::Reserved(_) => EnrollError::InvalidDomain(e.to_string()),
            other => {
                tracing::error!(error = %other, "enrollment: cannot add the domain");
                EnrollError::Internal
            }
        })
    }

    /// Writes the attestation and tells the co-located labeler at once.
    async fn attest(
        &self,
        repo: &dyn Repo,
        did: &str,
        domain: &Domain,
        selectors: &[String],
    ) -> Result<String, EnrollError> {
        let record = Attestation::new(domain.as_str(), selectors.to_vec(), Some(true));
        record
            .validate(domain.as_str())
            .map_err(|e| EnrollError::InvalidDomain(e.to_string()))?;
        let json = serde_json::to_value(&record).map_err(|_| EnrollError::Internal)?;
        let uri = repo
            .put_record(ATTESTATION_NSID, domain.as_str(), json)
            .await
            .map_err(EnrollError::Attestation)?;
        if let Some(l) = &self.labeler
            && let Err(e) = l.attested(did, domain.as_str(), &record)
        {
            tracing::warn!(error = %e, "enrollment: the labeler could not record the attestation");
        }
        Ok(uri)
    }

    /// Removes a domain's rows (and the member, when this enrollment had just created it).
    fn undo(&self, did: &str, domain: &Domain, remove_member: bool) -> Result<(), EnrollError> {
        let now = now_ms();
        self.store.write(|tx| {
            member_rows::delete_domain(tx, did, domain.as_str())?;
            dkim_keys::delete_domain(tx, domain.as_str())?;
            if remove_member && member_rows::domains_of(tx, did)?.is_empty() {
                member_rows::delete_member(tx, did)?;
            }
            events::append(
                tx,
                now,
                &NewEvent {
                    kind: "enrollment_abandoned",
                    did: Some(did),
                    actor: Some(ACTOR),
                    data: serde_json::json!({ "domain": domain.as_str() }),
                    ..Default::default()
                },
            )
        })?;
        Ok(())
    }

    /// Removes a sending domain: its keys are deleted and its attestation leaves the repo.
    pub async fn remove_domain(
        &self,
        did: &str,
        domain: &str,
        repo: &dyn Repo,
    ) -> Result<(), EnrollError> {
        let domain = Self::parse(domain)?;
        self.own(did, &domain)?;
        repo.delete_record(ATTESTATION_NSID, domain.as_str())
            .await
            .map_err(EnrollError::Attestation)?;
        let now = now_ms();
        self.store.write(|tx| {
            member_rows::delete_domain(tx, did, domain.as_str())?;
            dkim_keys::delete_domain(tx, domain.as_str())?;
            events::append(
                tx,
                now,
                &NewEvent {
                    kind: "domain_removed",
                    did: Some(did),
                    actor: Some(ACTOR),
                    data: serde_json::json!({ "domain": domain.as_str() }),
                    ..Default::default()
                },
            )
        })?;
        if let Some(l) = &self.labeler
            && let Err(e) = l.withdrawn(did, domain.as_str())
        {
            tracing::warn!(error = %e, "enrollment: the labeler could not record the withdrawal");
        }
        Ok(())
    }

    /// Re-enrolls a domain: new keys with new dated selectors, and the attestation updated to
    /// name them. The new keys are published first and sign only once DNS serves them
    /// ([`crate::dkim::rollover`]); the old ones sign until then and stay listed 48 h after.
    pub async fn rotate_domain(
        &self,
        did: &str,
        domain: &str,
        repo: &dyn Repo,
    ) -> Result<Enrolled, EnrollError> {
        let domain = Self::parse(domain)?;
        self.own(did, &domain)?;
        let keys = crate::dkim::keys::generate_bounded(crate::dkim::keys::KeySet::generate)
            .await
            .map_err(|_| busy())?
            .map_err(|e| {
                tracing::error!(error = %e, "enrollment: key generation failed");
                EnrollError::Internal
            })?;
        let now = now_ms();
        let secrets = self.secrets.clone();
        let rows = self.store.write(|tx| {
            let rows = crate::dkim::keys::rotate(
                tx,
                &secrets,
                domain.as_str(),
                crate::dkim::keys::Owner::Member,
                now,
                keys,
                crate::dkim::keys::Switch::WhenPublished,
            )?;
            events::append(
                tx,
                now,
                &NewEvent {
                    kind: "domain_rotated",
                    did: Some(did),
                    actor: Some(ACTOR),
                    data: serde_json::json!({ "domain": domain.as_str() }),
                    ..Default::default()
                },
            )?;
            Ok(rows)
        })?;
        let selectors: Vec<String> = rows.iter().map(|r| r.selector.clone()).collect();
        let attestation = self.attest(repo, did, &domain, &selectors).await?;
        let state = self
            .store
            .with(|c| member_rows::get(c, did))?
            .map(|m| m.state.as_str().to_string())
            .unwrap_or_default();
        Ok(Enrolled {
            domain: domain.to_string(),
            api_key: None,
            state,
            dns_records: crate::records::member(&self.config, did, domain.as_str(), &rows),
            selectors,
            attestation,
        })
    }

    /// Makes `domain`'s pending keys sign when DNS serves every one of their records; returns
    /// whether it did.
    pub async fn promote_if_published(&self, domain: &Domain) -> Result<bool, EnrollError> {
        Ok(
            crate::dkim::rollover::promote_if_published(&self.store, &self.dns, domain.as_str())
                .await?,
        )
    }

    /// A new API key for `did`; the old one stops working at once (its hash is gone, so the
    /// authentication cache misses too).
    pub async fn regenerate_key(&self, did: &str) -> Result<String, EnrollError> {
        let (store, did) = (self.store.clone(), did.to_string());
        // bcrypt at the real cost: on the bounded pool with key generation.
        crate::dkim::keys::generate_bounded(move || members::new_key(&store, &did, ACTOR))
            .await
            .map_err(|_| busy())?
            .map_err(|e| match e {
                MemberError::NotFound(_) => EnrollError::NotYours("this account".into()),
                other => {
                    tracing::error!(error = %other, "enrollment: cannot make a new key");
                    EnrollError::Internal
                }
            })
    }

    /// The DNS records of one of `did`'s domains, each checked against what DNS serves now.
    pub async fn check_domain(
        &self,
        did: &str,
        domain: &str,
    ) -> Result<Vec<dnscheck::RecordCheck>, EnrollError> {
        let domain = Self::parse(domain)?;
        self.own(did, &domain)?;
        // Every record to keep published: the signing keys, the ones waiting for DNS, and those
        // retired less than the overlap ago (mail they signed may still be on its way).
        let since = now_ms() - crate::dkim::keys::RECORD_OVERLAP_MS;
        let rows = self
            .store
            .with(|c| dkim_keys::published(c, domain.as_str(), since))?;
        let expected = crate::records::member(&self.config, did, domain.as_str(), &rows);
        let checks =
            dnscheck::check(&self.dns, &domain, &expected, &self.config.server.hostname).await;
        if rows.iter().any(|k| k.pending) {
            self.promote_if_published(&domain).await?;
        }
        Ok(checks)
    }

    /// Whether one of `did`'s domains is attested in the member's repo with the relay's current
    /// selectors.
    pub async fn check_attestation(
        &self,
        did: &str,
        domain: &str,
        repo: &dyn Repo,
    ) -> Result<atmos_lexicons::api::AttestationCheck, EnrollError> {
        let domain = Self::parse(domain)?;
        self.own(did, &domain)?;
        let mut expected: Vec<String> = self
            .store
            .with(|c| dkim_keys::newest(c, domain.as_str()))?
            .into_iter()
            .map(|k| k.selector)
            .collect();
        expected.sort();
        let record = repo
            .get_record(ATTESTATION_NSID, domain.as_str())
            .await
            .map_err(EnrollError::Attestation)?;
        let mut selectors: Vec<String> = record
            .as_ref()
            .and_then(|r| r["dkimSelectors"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect();
        selectors.sort();
        let matches = record.as_ref().is_some_and(|r| {
            r["domain"] == domain.as_str() && r["relayMember"] == true && selectors == expected
        });
        Ok(atmos_lexicons::api::AttestationCheck {
            uri: format!("at://{did}/{ATTESTATION_NSID}/{domain}"),
            domain: domain.to_string(),
            present: record.is_some(),
            matches,
            selectors,
            expected,
        })
    }

    /// Any domain's `expected` records (the operator's, say) against what DNS serves now.
    pub async fn check_records(
        &self,
        domain: &Domain,
        expected: &[crate::records::DnsRecord],
    ) -> Vec<dnscheck::RecordCheck> {
        dnscheck::check(&self.dns, domain, expected, &self.config.server.hostname).await
    }

    fn own(&self, did: &str, domain: &Domain) -> Result<(), EnrollError> {
        match self
            .store
            .with(|c| member_rows::domain_owner(c, domain.as_str()))?
        {
            Some(owner) if owner == did => Ok(()),
            _ => Err(EnrollError::NotYours(domain.to_string())),
        }
    }
}
