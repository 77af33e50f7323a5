//! The operator's admin API (BEHAVIOUR §12): the admin token (`Authorization: Bearer
//! $ADMIN_TOKEN`, constant time; none configured refuses it) or an operator's web session
//! (`http::access`). `members` (lifecycle, labels, search, detail), `queue` (browse, retry,
//! delete, bulk), `logs` (events, verdicts, inbound), `overview` (the relay at a glance).

mod logs;
mod members;
mod overview;
mod queue;

pub use logs::*;
pub use members::*;
pub use overview::*;
pub use queue::*;

use crate::members::MemberError;
use axum::extract::rejection::QueryRejection;
use axum::http::StatusCode;

/// Environment variable holding the admin token.
pub const ADMIN_TOKEN_ENV: &str = "ADMIN_TOKEN";

pub use atmos_labeler::admin::AdminError;
pub(crate) use atmos_labeler::admin::{internal, invalid};

impl From<MemberError> for AdminError {
    fn from(e: MemberError) -> Self {
        match &e {
            MemberError::NotFound(_) => Self(StatusCode::NOT_FOUND, "NOT_FOUND", e.to_string()),
            MemberError::InvalidTransition { .. } => {
                Self(StatusCode::CONFLICT, "INVALID_TRANSITION", e.to_string())
            }
            MemberError::InvalidDomain(_) => invalid(e.to_string()),
            _ => internal(e),
        }
    }
}

pub(crate) fn not_found(what: String) -> AdminError {
    AdminError(StatusCode::NOT_FOUND, "NOT_FOUND", what)
}

/// A filter value, unless empty (pages send empty fields).
pub(crate) fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|t| !t.is_empty())
}

pub(crate) fn bad_query(e: QueryRejection) -> AdminError {
    invalid(format!("query: {}", e.body_text()))
}
