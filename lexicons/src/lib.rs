//! Shared Rust types for the `email.atmos.*` lexicons. The lexicon JSON itself lives in
//! `lexicons/email/atmos/` beside this crate; `tests/e2e/lexicons.rs` validates records made here
//! against it with `@atproto/lexicon`.

pub mod api;
pub mod did;
pub mod domain;

pub use atrium_api::types::string::{Datetime, Did};
pub use domain::{Domain, DomainError};
use serde::{Deserialize, Serialize};

/// NSID of the attestation record.
pub const ATTESTATION_NSID: &str = "email.atmos.attestation";

/// Label values of `email.atmos.defs#cooperativeLabel`.
pub mod labels {
    /// DKIM records for the attested selectors are live in DNS and match the relay's keys.
    pub const VERIFIED_MAIL_OPERATOR: &str = "verified-mail-operator";
    /// Verified, approved, and attested `relayMember: true`.
    pub const RELAY_MEMBER: &str = "relay-member";
    /// No bounce or complaint spike in 7 days.
    pub const CLEAN_SENDER: &str = "clean-sender";
    /// All three, in the order the lexicon lists them.
    pub const ALL: [&str; 3] = [VERIFIED_MAIL_OPERATOR, RELAY_MEMBER, CLEAN_SENDER];
}

/// The lexicon JSON, embedded so binaries can print or serve it.
pub mod json {
    /// `email.atmos.attestation`.
    pub const ATTESTATION: &str = include_str!("../email/atmos/attestation.json");
    /// `email.atmos.defs`.
    pub const DEFS: &str = include_str!("../email/atmos/defs.json");
}

/// `email.atmos.attestation`: a member states that `domain` is DKIM-signed by the relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attestation {
    /// Always `email.atmos.attestation` in a stored record.
    #[serde(rename = "$type", default = "attestation_type")]
    pub record_type: String,
    /// The sending domain; equals the record key.
    pub domain: String,
    /// Selectors under `<selector>._domainkey.<domain>`.
    pub dkim_selectors: Vec<String>,
    /// Sends through the cooperative relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_member: Option<bool>,
    /// When the member made the statement.
    pub created_at: Datetime,
}

fn attestation_type() -> String {
    ATTESTATION_NSID.to_string()
}

/// Why a record breaks the lexicon.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRecord {
    #[error("$type is {0:?}, expected email.atmos.attestation")]
    Type(String),
    #[error("domain {0}")]
    Domain(#[from] DomainError),
    #[error("domain {domain:?} differs from the record key {rkey:?}")]
    RkeyMismatch { domain: String, rkey: String },
    #[error("dkimSelectors must hold 1-10 entries")]
    SelectorCount,
    #[error("selector {0:?} must be 1-63 letters, digits, '-' or '_'")]
    Selector(String),
}

impl Attestation {
    /// A new attestation dated now.
    pub fn new(domain: &str, selectors: Vec<String>, relay_member: Option<bool>) -> Self {
        Self {
            record_type: attestation_type(),
            domain: domain.to_ascii_lowercase(),
            dkim_selectors: selectors,
            relay_member,
            created_at: Datetime::now(),
        }
    }

    /// Checks the lexicon's constraints and that the domain is the record key.
    pub fn validate(&self, rkey: &str) -> Result<(), InvalidRecord> {
        if self.record_type != ATTESTATION_NSID {
            return Err(InvalidRecord::Type(self.record_type.clone()));
        }
        let domain = Domain::parse(&self.domain)?;
        if domain.as_str() != rkey.to_ascii_lowercase() {
            return Err(InvalidRecord::RkeyMismatch {
                domain: self.domain.clone(),
                rkey: rkey.into(),
            });
        }
        if self.dkim_selectors.is_empty() || self.dkim_selectors.len() > 10 {
            return Err(InvalidRecord::SelectorCount);
        }
        for s in &self.dkim_selectors {
            let ok = !s.is_empty()
                && s.len() <= 63
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(InvalidRecord::Selector(s.clone()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_validates() {
        let json = r#"{"$type":"email.atmos.attestation","domain":"sender.test",
            "dkimSelectors":["a1","b2"],"relayMember":true,"createdAt":"2026-11-23T10:00:00.000Z"}"#;
        let a: Attestation = serde_json::from_str(json).expect("parses");
        assert_eq!(a.dkim_selectors, ["a1", "b2"]);
        assert_eq!(a.relay_member, Some(true));
        a.validate("sender.test").expect("valid");
        assert!(matches!(
            a.validate("other.test"),
            Err(InvalidRecord::RkeyMismatch { .. })
        ));
        let back = serde_json::to_value(&a).expect("serialises");
        assert_eq!(back["dkimSelectors"][1], "b2");
        assert_eq!(back["$type"], ATTESTATION_NSID);
    }

    #[test]
    fn rejects_bad_selectors_and_types() {
        let mut a = Attestation::new("sender.test", vec![], None);
        assert_eq!(a.validate("sender.test"), Err(InvalidRecord::SelectorCount));
        a.dkim_selectors = vec!["x".repeat(64)];
        assert!(matches!(
            a.validate("sender.test"),
            Err(InvalidRecord::Selector(_))
        ));
        a.dkim_selectors = vec!["ok".into()];
        a.record_type = "app.bsky.feed.post".into();
        assert!(matches!(
            a.validate("sender.test"),
            Err(InvalidRecord::Type(_))
        ));
        assert!(
            serde_json::from_str::<Attestation>(
                r#"{"domain":"d","dkimSelectors":[],"createdAt":"not a date"}"#
            )
            .is_err()
        );
    }
}
