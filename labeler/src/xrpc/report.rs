//! `com.atproto.moderation.createReport`: reports from atproto accounts, authenticated by a
//! service-auth token, stored for the operator's admin API.

use super::XrpcError;
use crate::Labeler;
use crate::service_auth;
use crate::store::Report;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use std::sync::Arc;

/// The method name a token must be bound to (`lxm`).
pub const LXM: &str = "com.atproto.moderation.createReport";
const MAX_REASON: usize = 20_000;
/// Longest `reasonType` (the lexicon's known values are under 50 characters).
const MAX_REASON_TYPE: usize = 128;
/// Largest `subject`, as JSON: a repoRef or strongRef is a DID, an at:// URI and a CID.
const MAX_SUBJECT: usize = 2048;

fn auth_error(e: service_auth::AuthError) -> XrpcError {
    let status = match e.name {
        "RateLimitExceeded" => StatusCode::TOO_MANY_REQUESTS,
        "InternalServerError" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNAUTHORIZED,
    };
    XrpcError {
        status,
        error: e.name,
        message: e.message,
    }
}

/// `POST /xrpc/com.atproto.moderation.createReport`.
#[utoipa::path(post, path = "/xrpc/com.atproto.moderation.createReport", tag = "labeler",
    request_body(content = Object, description = "{reasonType, reason?, subject}", content_type = "application/json"),
    responses(
        (status = 200, description = "The stored report", body = Object),
        (status = 400, description = "InvalidRequest", body = Object),
        (status = 401, description = "Service-auth token missing or refused", body = Object),
        (status = 429, description = "RateLimitExceeded: this issuer, its site or everyone sent too many", body = Object),
        (status = 500, description = "InternalServerError", body = Object),
    ))]
pub async fn create_report(
    State(labeler): State<Arc<Labeler>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, XrpcError> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| XrpcError {
            status: StatusCode::UNAUTHORIZED,
            error: "AuthenticationRequired",
            message: "a service-auth bearer token is required".into(),
        })?;
    let input: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| XrpcError::invalid(format!("body is not JSON: {e}")))?;
    let reason_type = input
        .get("reasonType")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty() && s.len() <= MAX_REASON_TYPE)
        .ok_or_else(|| {
            XrpcError::invalid(format!(
                "reasonType is required, at most {MAX_REASON_TYPE} characters"
            ))
        })?;
    let reason = match input.get("reason") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(
            v.as_str()
                .filter(|s| s.chars().count() <= MAX_REASON)
                .ok_or_else(|| {
                    XrpcError::invalid("reason must be a string of at most 20000 characters")
                })?,
        ),
    };
    let subject = input
        .get("subject")
        .filter(|s| valid_subject(s))
        .ok_or_else(|| {
            XrpcError::invalid(
                "subject must be a com.atproto.admin.defs#repoRef or com.atproto.repo.strongRef",
            )
        })?;
    if subject.to_string().len() > MAX_SUBJECT {
        return Err(XrpcError::invalid(format!(
            "subject must be at most {MAX_SUBJECT} bytes of JSON"
        )));
    }
    let now_s = crate::now() / 1000;
    let store = &labeler.store;
    let claims = service_auth::verify(
        token,
        labeler.did(),
        LXM,
        &labeler.resolver,
        now_s,
        // Counted only now that the signature verified: forged tokens naming an issuer cannot
        // use up its quota.
        |issuer| labeler.resolver.charge_report(issuer),
        |iss, jti, exp| {
            store
                .use_jti(iss, jti, exp, now_s)
                .map_err(|e| e.to_string())
        },
    )
    .await
    .map_err(auth_error)?;
    let report = labeler
        .store
        .insert_report(Report {
            id: 0,
            reported_by: claims.iss.split('#').next().unwrap_or_default().to_string(),
            reason_type: reason_type.to_string(),
            reason: reason.map(str::to_string),
            subject: subject.clone(),
            created_at: atmos_lexicons::Datetime::now().as_str().to_string(),
            status: "open".into(),
            acted_by: None,
            note: None,
        })
        .map_err(XrpcError::internal)?;
    tracing::info!(id = report.id, by = %report.reported_by, reason_type, "report received");
    // The lexicon's output: what was reported, not the moderation state.
    let mut out = serde_json::json!({
        "id": report.id,
        "reasonType": report.reason_type,
        "subject": report.subject,
        "reportedBy": report.reported_by,
        "createdAt": report.created_at,
    });
    if let Some(reason) = &report.reason {
        out["reason"] = serde_json::json!(reason);
    }
    Ok(Json(out))
}

fn valid_subject(s: &serde_json::Value) -> bool {
    let str_field = |k: &str| {
        s.get(k)
            .and_then(|v| v.as_str())
            .is_some_and(|v| !v.is_empty())
    };
    match s.get("$type").and_then(|t| t.as_str()) {
        Some("com.atproto.admin.defs#repoRef") => {
            str_field("did") && s["did"].as_str().is_some_and(|d| d.starts_with("did:"))
        }
        Some("com.atproto.repo.strongRef") => {
            str_field("cid") && s["uri"].as_str().is_some_and(|u| u.starts_with("at://"))
        }
        _ => false,
    }
}
