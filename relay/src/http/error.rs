//! JSON errors: `SubmitError` rendered as HTTP status + `{"error", "code"}` (+ `Retry-After`).

use crate::accept::SubmitError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The JSON body of every error.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Human-readable text.
    pub error: String,
    /// Stable code (BEHAVIOUR §4.2), e.g. `AUTH_FAILED`.
    pub code: String,
}

/// Errors any member-authenticated endpoint can answer.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum MemberErrors {
    /// AUTH_REQUIRED, INVALID_DID or INVALID_REQUEST.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// AUTH_FAILED.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// MEMBER_PENDING, MEMBER_SUSPENDED or DOMAIN_MISMATCH.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// NOT_FOUND.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// INTERNAL.
    #[response(status = 500)]
    Internal(ErrorBody),
}

/// Errors any admin endpoint can answer.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum AdminErrors {
    /// INVALID_REQUEST.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// ADMIN_AUTH_FAILED: token missing or wrong.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// NOT_FOUND.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// INVALID_TRANSITION.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// INTERNAL.
    #[response(status = 500)]
    Internal(ErrorBody),
}

/// Errors any signed-in web endpoint (`/api/…`) can answer.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum WebErrors {
    /// INVALID_REQUEST, DOMAIN_NOT_PROVEN (details: the ownership check), IDENTITY, SIGNIN_FAILED.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// SIGNED_OUT.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// CSRF: the request lacks the session's token.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// NOT_FOUND.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// DOMAIN_TAKEN, DOMAIN_LIMIT.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// RATE_LIMITED.
    #[response(status = 429)]
    TooMany(ErrorBody),
    /// INTERNAL.
    #[response(status = 500)]
    Internal(ErrorBody),
    /// ATTESTATION_FAILED, PDS_UNREACHABLE.
    #[response(status = 502)]
    BadGateway(ErrorBody),
    /// BUSY: too many sign-ins in progress.
    #[response(status = 503)]
    Busy(ErrorBody),
}

/// An API error: one of the shared submission errors, a plain not-found, or any other coded
/// answer (sign-in, sessions, enrollment).
#[derive(Debug)]
pub enum ApiError {
    Submit(SubmitError),
    NotFound(String),
    IdempotencyConflict,
    Coded {
        status: u16,
        code: &'static str,
        message: String,
        /// Extra JSON for the page (what a DNS check observed…).
        details: Option<serde_json::Value>,
    },
    /// 429 `RATE_LIMITED` with `Retry-After`.
    TooMany {
        message: String,
        retry_after: u64,
    },
}

impl ApiError {
    /// A coded error without details.
    pub fn coded(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self::Coded {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        Self::Submit(e)
    }
}

impl ApiError {
    /// Status, stable code and text.
    pub fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            Self::Submit(e) => (
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                e.code(),
                e.to_string(),
            ),
            Self::NotFound(what) => (
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                format!("{what} not found"),
            ),
            Self::IdempotencyConflict => (
                StatusCode::CONFLICT,
                "IDEMPOTENCY_CONFLICT",
                "Idempotency-Key was already used with a different request body".into(),
            ),
            Self::Coded {
                status,
                code,
                message,
                ..
            } => (
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                code,
                message.clone(),
            ),
            Self::TooMany { message, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                message.clone(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, text) = self.parts();
        let retry_after = match &self {
            Self::Submit(e) => e.retry_after(),
            Self::TooMany { retry_after, .. } => Some((*retry_after).max(1)),
            _ => None,
        };
        let mut body = serde_json::json!({ "error": text, "code": code });
        if let Self::Coded {
            details: Some(d), ..
        } = &self
        {
            body["details"] = d.clone();
        }
        let mut resp = (status, axum::Json(body)).into_response();
        if let Some(secs) = retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}
