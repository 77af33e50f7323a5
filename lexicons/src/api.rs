//! Request and response bodies of the relay's web API (`/api/…`), shared by the relay (which
//! serves them) and the Leptos pages (which call them), so neither retypes the other.

use serde::{Deserialize, Serialize};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// The JSON body of every error.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ApiErrorBody {
    /// Human-readable text.
    pub error: String,
    /// Stable code, e.g. `DOMAIN_NOT_PROVEN`.
    pub code: String,
    /// Extra data for some codes (the ownership check of `DOMAIN_NOT_PROVEN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub details: Option<serde_json::Value>,
}

/// Body of `POST /api/signin`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SigninRequest {
    /// A handle (`alice.example.com`), a DID, or a PDS URL.
    pub identifier: String,
    /// Where to come back to after signing in (a path of this site; default `/enroll`).
    #[serde(default)]
    pub return_to: Option<String>,
}

/// Answer of `POST /api/signin`: where to send the browser.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SigninStarted {
    pub redirect: String,
}

/// One sending domain as the session shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SessionDomain {
    pub domain: String,
    pub forward_to: Option<String>,
    /// False while a domain added by an active member waits for an operator's review: it
    /// cannot send or forward before.
    #[serde(default = "approved_by_default")]
    pub approved: bool,
}

fn approved_by_default() -> bool {
    true
}

/// The member behind a session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SessionMember {
    /// `pending`, `active` or `suspended`.
    pub state: String,
    pub state_reason: Option<String>,
    pub domains: Vec<SessionDomain>,
}

/// Answer of `GET /api/session`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub signed_in: bool,
    pub did: Option<String>,
    pub handle: Option<String>,
    /// Send this in `X-CSRF-Token` with every request that changes state.
    pub csrf: Option<String>,
    /// Present once the DID has enrolled.
    pub member: Option<SessionMember>,
    pub operator: bool,
    /// The domain limit of this relay.
    pub max_domains: u32,
    /// `atmos dev`: the wizard can publish records to the embedded DNS zone.
    pub dev_zone: bool,
    /// `host:port` of SMTP submission, for the examples.
    pub submission: String,
}

/// TXT records found at one name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Observed {
    pub name: String,
    pub records: Vec<String>,
    /// Set when the lookup failed (not the same as "no record").
    pub error: Option<String>,
}

/// Answer of `GET /api/ownership`: whether the signed-in DID has proven a domain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OwnershipCheck {
    pub domain: String,
    pub proven: bool,
    /// How: `_atmos`, `_atproto` or `handle`.
    pub via: Option<String>,
    /// The record to publish: name and value.
    pub expected_name: String,
    pub expected_value: String,
    /// What DNS serves at each name looked at.
    pub observed: Vec<Observed>,
}

/// One DNS record to publish.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct DnsRecord {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
    /// What the operator must fill in or know, when the value is not literal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One record's check against DNS.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RecordCheck {
    /// Absolute name (`atmos20261201r._domainkey.example.com`).
    pub name: String,
    /// Name relative to the domain (`atmos20261201r._domainkey`, `@` for the domain).
    pub relative_name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
    /// A TXT value as the strings (≤ 255 bytes each) a DNS provider wants.
    pub strings: Vec<String>,
    /// What DNS serves there now (records of the same kind).
    pub observed: Vec<String>,
    /// `ok`, `missing`, `different`, `optional` or `lookup_failed`.
    pub status: String,
    pub required: bool,
    pub advice: Option<String>,
}

/// Body of `POST /api/domains`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AddDomain {
    pub domain: String,
}

/// What enrolling (or re-enrolling) a domain produced.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Enrolled {
    pub domain: String,
    /// The member's API key: present only when this enrollment created the member. Shown once.
    pub api_key: Option<String>,
    pub state: String,
    pub selectors: Vec<String>,
    /// The attestation's `at://` URI.
    pub attestation: String,
    pub dns_records: Vec<DnsRecord>,
}

/// Answer of `GET /api/domains/{domain}/attestation`: the record in the member's repo against
/// what the relay signs with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AttestationCheck {
    pub domain: String,
    /// The record exists in the repo.
    pub present: bool,
    /// It names exactly the relay's current selectors and `relayMember: true`.
    pub matches: bool,
    /// The selectors the record names (empty when absent).
    pub selectors: Vec<String>,
    /// The selectors the relay signs with.
    pub expected: Vec<String>,
    /// `at://<did>/email.atmos.attestation/<domain>`.
    pub uri: String,
}

/// Answer of `POST /api/key`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct NewKey {
    /// Shown once; the old key stopped working.
    pub api_key: String,
}
