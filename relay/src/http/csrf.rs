//! The CSRF token every state-changing request of a web session carries (`X-CSRF-Token`). Its
//! own module so that the session (which issues it) and access (which demands it) share it
//! without importing each other.

use super::error::ApiError;
use axum::http::request::Parts;
use subtle::ConstantTimeEq;

/// The header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The refusal's stable code and text.
pub const REFUSED: (&str, &str) = (
    "CSRF",
    "the request lacks this session's CSRF token; reload the page",
);

/// Whether the request carries `expected`, the session's CSRF token (constant time).
pub fn carries(parts: &Parts, expected: &str) -> bool {
    let sent = parts
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    bool::from(sent.as_bytes().ct_eq(expected.as_bytes()))
}

/// 403 `CSRF`.
pub fn refused() -> ApiError {
    ApiError::coded(403, REFUSED.0, REFUSED.1)
}
