//! Which recipients the MX accepts (BEHAVIOUR §7): VERP bounce addresses and operator aliases on the
//! operator domain, SRS addresses on the relay's hostname, and member domains (replies). Anything
//! else is relaying and is refused.

use crate::address::Mailbox;
use crate::secrets::Secrets;
use crate::store::{Store, StoreError, members};
use crate::verp::VerpTarget;

/// Local parts of the operator domain that reach the operator.
pub const OPERATOR_ALIASES: [&str; 5] = ["postmaster", "abuse", "fbl", "support", "hostmaster"];

/// Where an accepted recipient leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The VERP return path of a message (and recipient) the relay sent.
    Bounce { target: VerpTarget },
    /// The SRS sender of a message the relay forwarded: goes back to the original sender.
    SrsBounce { sender: Mailbox },
    /// An operator alias (`postmaster@` ...).
    Operator { alias: String },
    /// An address at a member's sending domain, forwarded to the domain's forward-to address.
    Reply {
        did: String,
        domain: String,
        forward_to: Mailbox,
    },
}

/// Why a recipient is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("relaying denied")]
    RelayDenied,
    /// A member domain with no forward-to address.
    #[error("address not available")]
    NotAvailable,
    /// A VERP or SRS address whose tag does not verify (forged, damaged or expired).
    #[error("unknown bounce address")]
    UnknownBounce,
    #[error("temporary lookup failure, try again later")]
    Internal,
}

impl Refusal {
    /// SMTP reply code and enhanced status.
    pub fn smtp(&self) -> (u16, &'static str) {
        match self {
            Self::RelayDenied => (550, "5.7.1"),
            Self::NotAvailable | Self::UnknownBounce => (550, "5.1.1"),
            Self::Internal => (451, "4.3.0"),
        }
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "inbound: store error while routing");
        Self::Internal
    }
}

/// Names the router needs.
#[derive(Debug, Clone)]
pub struct RouteNames {
    /// `server.hostname`: SRS host; `postmaster@` it is an operator alias too (RFC 5321 §4.5.1).
    pub hostname: String,
    /// `server.operator_domain`: VERP domain and operator aliases.
    pub operator_domain: String,
}

/// Classifies one recipient.
pub fn route(
    store: &Store,
    secrets: &Secrets,
    names: &RouteNames,
    recipient: &Mailbox,
    now_secs: u64,
) -> Result<Route, Refusal> {
    let Some(domain) = recipient.domain_name().map(|d| d.to_string()) else {
        return Err(Refusal::RelayDenied);
    };
    let local_lower = recipient.local().to_ascii_lowercase();
    let address = recipient.as_str();
    if domain == names.operator_domain.to_ascii_lowercase() {
        if local_lower.starts_with("bounces+") {
            return crate::verp::parse_return_path(secrets, address, &names.operator_domain)
                .map(|target| Route::Bounce { target })
                .map_err(|_| Refusal::UnknownBounce);
        }
        if OPERATOR_ALIASES.contains(&local_lower.as_str()) {
            return Ok(Route::Operator { alias: local_lower });
        }
    }
    if domain == names.hostname.to_ascii_lowercase() {
        if local_lower.starts_with("srs0=") {
            return crate::srs::reverse(secrets, address, &names.hostname, now_secs)
                .map(|sender| Route::SrsBounce { sender })
                .map_err(|_| Refusal::UnknownBounce);
        }
        if local_lower == "postmaster" {
            return Ok(Route::Operator { alias: local_lower });
        }
    }
    let Some((did, approved)) = store.with(|c| members::domain_standing(c, &domain))? else {
        return Err(Refusal::RelayDenied);
    };
    // Only an active member's domain forwards: enrolling is self-service, so a pending or
    // suspended member is nobody the operator vouches for, and the copy leaves signed with the
    // operator's key from the shared IP.
    let active = store
        .with(|c| members::get(c, &did))?
        .is_some_and(|m| m.state == members::MemberState::Active);
    if !active || !approved {
        return Err(Refusal::RelayDenied);
    }
    match store.with(|c| members::forward_to(c, &domain))? {
        Some(forward_to) => Ok(Route::Reply {
            did,
            domain,
            forward_to,
        }),
        None => Err(Refusal::NotAvailable),
    }
}
