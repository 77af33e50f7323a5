//! The one error type of submission: SMTP replies and HTTP codes are two renderings of it.

use crate::auth::AuthError;
use crate::spool::SpoolError;
use crate::store::StoreError;

/// Every reason a submission is refused. SMTP replies and HTTP codes are two renderings of these.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    #[error("Authentication required")]
    AuthRequired,
    #[error("Authentication credentials invalid")]
    AuthFailed,
    /// Too many failed logins from the client's address (or its /64); retry after this many
    /// seconds.
    #[error("too many authentication failures from your address, retry later")]
    AuthThrottled(u64),
    #[error("invalid DID or handle {0:?}")]
    InvalidDid(String),
    #[error("pending operator approval")]
    MemberPending,
    #[error("account suspended")]
    MemberSuspended,
    /// The API key the session or request authenticated with was regenerated since.
    #[error("Authentication required: the API key was changed")]
    KeyChanged,
    #[error("DOMAIN_MISMATCH {0}")]
    DomainMismatch(String),
    /// The member's own domain, added while active, not yet reviewed by an operator.
    #[error("DOMAIN_PENDING {0}")]
    DomainPending(String),
    /// A malformed request (a field that does not parse).
    #[error("{0}")]
    InvalidRequest(String),
    /// A well-formed message the relay's policy refuses (two From fields, an auth-category
    /// message to several recipients…). SMTP 550 5.7.1, HTTP 400 INVALID_REQUEST.
    #[error("{0}")]
    Refused(String),
    #[error("message too big")]
    TooBig,
    /// Over a sending cap; retry after this many seconds.
    #[error("RATE_LIMITED hourly limit reached, retry later")]
    RateLimited(u64),
    #[error("queue full, retry later")]
    QueueFull,
    #[error("internal error, retry later")]
    Internal,
}

impl SubmitError {
    /// Stable machine-readable code (HTTP `code`, event `reject_reason`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::AuthRequired => "AUTH_REQUIRED",
            Self::AuthFailed | Self::KeyChanged => "AUTH_FAILED",
            Self::InvalidDid(_) => "INVALID_DID",
            Self::MemberPending => "MEMBER_PENDING",
            Self::MemberSuspended => "MEMBER_SUSPENDED",
            Self::DomainMismatch(_) => "DOMAIN_MISMATCH",
            Self::DomainPending(_) => "DOMAIN_PENDING",
            Self::InvalidRequest(_) | Self::Refused(_) => "INVALID_REQUEST",
            Self::TooBig => "PAYLOAD_TOO_LARGE",
            Self::RateLimited(_) | Self::AuthThrottled(_) => "RATE_LIMITED",
            Self::QueueFull => "QUEUE_FULL",
            Self::Internal => "INTERNAL",
        }
    }

    /// SMTP rendering: reply code, enhanced status code, text.
    pub fn smtp(&self) -> (u16, &'static str, String) {
        let text = self.to_string();
        match self {
            Self::AuthRequired => (530, "5.7.0", text),
            Self::AuthFailed => (535, "5.7.8", text),
            Self::KeyChanged => (530, "5.7.0", text),
            Self::AuthThrottled(_) => (
                421,
                "4.7.0",
                "Too many authentication failures, try later".into(),
            ),
            Self::InvalidDid(_) => (535, "5.7.8", "Authentication credentials invalid".into()),
            Self::MemberPending | Self::MemberSuspended => (535, "5.7.8", text),
            Self::DomainMismatch(_) | Self::DomainPending(_) | Self::Refused(_) => {
                (550, "5.7.1", text)
            }
            Self::InvalidRequest(_) => (550, "5.6.0", text),
            Self::TooBig => (552, "5.3.4", text),
            Self::RateLimited(_) => (451, "4.7.1", text),
            Self::QueueFull | Self::Internal => (451, "4.3.1", "queue full, retry later".into()),
        }
    }

    /// HTTP status for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::AuthRequired
            | Self::InvalidDid(_)
            | Self::InvalidRequest(_)
            | Self::Refused(_) => 400,
            Self::AuthFailed | Self::KeyChanged => 401,
            Self::MemberPending
            | Self::MemberSuspended
            | Self::DomainMismatch(_)
            | Self::DomainPending(_) => 403,
            Self::TooBig => 413,
            Self::RateLimited(_) | Self::AuthThrottled(_) => 429,
            Self::QueueFull => 503,
            Self::Internal => 500,
        }
    }

    /// Seconds a client should wait before retrying, for answers that carry `Retry-After`.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited(s) | Self::AuthThrottled(s) => Some((*s).max(1)),
            Self::QueueFull => Some(60),
            _ => None,
        }
    }
}

impl From<AuthError> for SubmitError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::InvalidCredentials => Self::AuthFailed,
            AuthError::Throttled(secs) => Self::AuthThrottled(secs),
            AuthError::Pending => Self::MemberPending,
            AuthError::Suspended => Self::MemberSuspended,
            AuthError::Internal => Self::Internal,
        }
    }
}

impl From<crate::store::members::Standing> for SubmitError {
    fn from(s: crate::store::members::Standing) -> Self {
        use crate::store::members::Standing;
        match s {
            Standing::Pending => Self::MemberPending,
            Standing::Suspended => Self::MemberSuspended,
            Standing::KeyChanged | Standing::Gone => Self::KeyChanged,
        }
    }
}

impl From<StoreError> for SubmitError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "accept: store error");
        Self::Internal
    }
}

impl From<crate::headers::HeaderError> for SubmitError {
    fn from(e: crate::headers::HeaderError) -> Self {
        use crate::headers::HeaderError;
        match e {
            // Syntax, not policy: 550 5.6.0.
            HeaderError::Malformed { .. } | HeaderError::Unreadable => {
                Self::InvalidRequest(e.to_string())
            }
            _ => Self::Refused(e.to_string()),
        }
    }
}

impl From<SpoolError> for SubmitError {
    fn from(e: SpoolError) -> Self {
        // Whatever failed, nothing was written: the client must retry (451 / 503).
        match &e {
            SpoolError::Job(inner) => match **inner {
                StoreError::RateLimited(secs) => return Self::RateLimited(secs),
                StoreError::MayNotSend(standing) => return standing.into(),
                StoreError::QueueFull => tracing::warn!("accept: queue full, refusing new mail"),
                _ => tracing::error!(error = %e, "accept: spool write failed"),
            },
            _ => tracing::error!(error = %e, "accept: spool write failed"),
        }
        Self::QueueFull
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renderings_match_spec() {
        assert_eq!(
            SubmitError::MemberPending.smtp(),
            (535, "5.7.8", "pending operator approval".into())
        );
        assert_eq!(SubmitError::MemberSuspended.smtp().2, "account suspended");
        assert_eq!(
            SubmitError::QueueFull.smtp(),
            (451, "4.3.1", "queue full, retry later".into())
        );
        assert_eq!(SubmitError::RateLimited(60).http_status(), 429);
        assert_eq!(
            SubmitError::DomainMismatch("x".into()).code(),
            "DOMAIN_MISMATCH"
        );
        let refused = SubmitError::Refused("two From fields".into());
        assert_eq!(
            (refused.smtp().0, refused.smtp().1, refused.code()),
            (550, "5.7.1", "INVALID_REQUEST")
        );
        assert_eq!(SubmitError::AuthThrottled(30).http_status(), 429);
        assert_eq!(SubmitError::AuthThrottled(30).retry_after(), Some(30));
    }
}
