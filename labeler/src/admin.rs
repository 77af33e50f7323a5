//! Operator moderation on the labeler: emit or negate any label with a reason (each is an audit
//! row: who, why, which key), list labels and reports and settle reports, force a check. Who may
//! is a [`Gate`]'s decision: the admin token alone ([`TokenGate`]), or in the relay also an
//! operator's web session. Errors use the relay's admin shape `{"error": text, "code": CODE}`.

use crate::Labeler;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Whether the request carries `Authorization: Bearer <expected>`; constant time, and a
/// missing or empty expected token refuses everything.
pub fn bearer_matches(headers: &HeaderMap, expected: Option<&str>) -> bool {
    let Some(expected) = expected.filter(|t| !t.is_empty()) else {
        return false;
    };
    let Some(given) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    // Compare digests so the time does not depend on the length either.
    let (a, b) = (
        Sha256::digest(given.trim().as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}

/// An admin API failure, rendered `{"error": text, "code": CODE}`: the one admin error type of
/// both the labeler's and the relay's admin endpoints.
pub struct AdminError(pub StatusCode, pub &'static str, pub String);

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(serde_json::json!({ "error": self.2, "code": self.1 })),
        )
            .into_response()
    }
}

/// 400 `INVALID_REQUEST`.
pub fn invalid(msg: impl Into<String>) -> AdminError {
    AdminError(StatusCode::BAD_REQUEST, "INVALID_REQUEST", msg.into())
}

/// 500 `INTERNAL`; the detail is logged, not returned.
pub fn internal(e: impl std::fmt::Display) -> AdminError {
    tracing::error!(error = %e, "admin: internal error");
    AdminError(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL",
        "internal error".into(),
    )
}

/// `Ok` when the request carries the admin token, else 401 `ADMIN_AUTH_FAILED`.
pub fn authorize(headers: &HeaderMap, token: Option<&str>) -> Result<(), AdminError> {
    if bearer_matches(headers, token) {
        Ok(())
    } else {
        Err(AdminError(
            StatusCode::UNAUTHORIZED,
            "ADMIN_AUTH_FAILED",
            "admin token missing or wrong".into(),
        ))
    }
}

/// Decides who may use the admin endpoints.
pub trait Gate: Send + Sync {
    /// The actor recorded in audit rows (`admin` for the token, `did:…` for an operator), or
    /// the refusal; `changing` is true for requests that change state.
    fn admit<'a>(
        &'a self,
        parts: &'a axum::http::request::Parts,
        changing: bool,
    ) -> futures_util::future::BoxFuture<'a, Result<String, AdminError>>;
}

/// The admin token, compared in constant time; the actor is `admin`.
pub struct TokenGate(pub Option<String>);

impl Gate for TokenGate {
    fn admit<'a>(
        &'a self,
        parts: &'a axum::http::request::Parts,
        _changing: bool,
    ) -> futures_util::future::BoxFuture<'a, Result<String, AdminError>> {
        Box::pin(async move {
            authorize(&parts.headers, self.0.as_deref()).map(|()| "admin".to_string())
        })
    }
}

/// What the admin handlers share.
pub struct AdminState {
    labeler: Arc<Labeler>,
    gate: Arc<dyn Gate>,
}

type St = State<Arc<AdminState>>;

/// The actor of an admitted admin request.
pub(crate) struct Admitted(String);

impl axum::extract::FromRequestParts<Arc<AdminState>> for Admitted {
    type Rejection = AdminError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Arc<AdminState>,
    ) -> Result<Self, AdminError> {
        let changing = !matches!(
            parts.method,
            axum::http::Method::GET | axum::http::Method::HEAD
        );
        state.gate.admit(parts, changing).await.map(Admitted)
    }
}

/// `/admin/labeler/*` routes, behind `gate`.
pub fn router(labeler: Arc<Labeler>, gate: Arc<dyn Gate>) -> axum::Router {
    axum::Router::new()
        .route("/admin/labeler/labels", get(list).post(emit))
        .route("/admin/labeler/reports", get(reports))
        .route("/admin/labeler/reports/{id}", post(settle))
        .route("/admin/labeler/verify/{did}", post(verify))
        .with_state(Arc::new(AdminState { labeler, gate }))
}

#[derive(serde::Deserialize)]
pub(crate) struct ListQuery {
    uri: Option<String>,
    limit: Option<u32>,
}

/// `GET /admin/labeler/labels?uri=&limit=`: newest first, with the audit fields.
#[utoipa::path(get, path = "/admin/labeler/labels", tag = "labeler-admin", security(("admin" = [])),
    params(("uri" = Option<String>, Query), ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000)),
    responses((status = 200, description = "Labels, newest first, with actor, reason and key id", body = Object), (status = 400, description = "INVALID_REQUEST", body = Object), (status = 401, description = "ADMIN_AUTH_FAILED", body = Object), (status = 500, description = "INTERNAL", body = Object)))]
pub(crate) async fn list(
    State(s): St,
    _: Admitted,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, AdminError> {
    let Query(q) = q.map_err(|e| invalid(format!("query: {}", e.body_text())))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = s
        .labeler
        .store
        .recent(q.uri.as_deref(), limit)
        .map_err(internal)?;
    let labels: Vec<_> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "seq": r.seq,
                "label": r.label.to_json(),
                "keyId": r.key_id,
                "reason": r.reason,
                "actor": r.actor,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "labels": labels })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EmitBody {
    uri: String,
    val: String,
    #[serde(default)]
    neg: bool,
    reason: String,
}

/// `POST /admin/labeler/labels {uri, val, neg, reason}`: publishes a label or its negation.
#[utoipa::path(post, path = "/admin/labeler/labels", tag = "labeler-admin", security(("admin" = [])),
    request_body(content = Object, description = "{uri, val, neg?, reason}", content_type = "application/json"),
    responses((status = 200, description = "The published label and its seq", body = Object), (status = 400, description = "INVALID_REQUEST", body = Object), (status = 401, description = "ADMIN_AUTH_FAILED", body = Object), (status = 500, description = "INTERNAL", body = Object)))]
pub(crate) async fn emit(
    State(s): St,
    Admitted(actor): Admitted,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, AdminError> {
    let b: EmitBody = serde_json::from_slice(&body).map_err(|e| invalid(format!("body: {e}")))?;
    let uri_ok = (b.uri.starts_with("did:") || b.uri.starts_with("at://")) && b.uri.len() <= 2048;
    if !uri_ok {
        return Err(invalid("uri must be a DID or an at:// URI"));
    }
    if !crate::label::valid_value(&b.val) {
        return Err(invalid(
            "val must be 1-128 lowercase letters, digits or '-'",
        ));
    }
    if b.reason.trim().is_empty() {
        return Err(invalid("reason is required"));
    }
    let stored = s
        .labeler
        .emit(&b.uri, &b.val, b.neg, Some(b.reason.trim()), &actor)
        .map_err(internal)?;
    Ok(Json(
        serde_json::json!({ "seq": stored.seq, "label": stored.label.to_json() }),
    ))
}

/// `GET /admin/labeler/reports`: newest first.
#[utoipa::path(get, path = "/admin/labeler/reports", tag = "labeler-admin", security(("admin" = [])),
    responses((status = 200, description = "Reports, newest first", body = Object), (status = 400, description = "INVALID_REQUEST", body = Object), (status = 401, description = "ADMIN_AUTH_FAILED", body = Object), (status = 500, description = "INTERNAL", body = Object)))]
pub(crate) async fn reports(
    State(s): St,
    _: Admitted,
) -> Result<Json<serde_json::Value>, AdminError> {
    let reports = s.labeler.store.reports(500).map_err(internal)?;
    Ok(Json(serde_json::json!({ "reports": reports })))
}

#[derive(serde::Deserialize)]
struct SettleBody {
    status: String,
    note: Option<String>,
}

/// `POST /admin/labeler/reports/{id} {status, note?}`: marks a report open, acted or dismissed.
#[utoipa::path(post, path = "/admin/labeler/reports/{id}", tag = "labeler-admin", security(("admin" = [])),
    params(("id" = i64, Path)),
    request_body(content = Object, description = "{status: open|acted|dismissed, note?}", content_type = "application/json"),
    responses((status = 200, description = "The report's new status", body = Object), (status = 400, description = "INVALID_REQUEST", body = Object), (status = 401, description = "ADMIN_AUTH_FAILED", body = Object), (status = 404, description = "NOT_FOUND", body = Object), (status = 500, description = "INTERNAL", body = Object)))]
pub(crate) async fn settle(
    State(s): St,
    Admitted(actor): Admitted,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, AdminError> {
    let id: i64 = id
        .parse()
        .map_err(|_| invalid("the report id is a number"))?;
    let b: SettleBody = serde_json::from_slice(&body).map_err(|e| invalid(format!("body: {e}")))?;
    if !crate::store::REPORT_STATUSES.contains(&b.status.as_str()) {
        return Err(invalid("status must be open, acted or dismissed"));
    }
    let note = b.note.as_deref().map(str::trim).filter(|n| !n.is_empty());
    if note.is_some_and(|n| n.len() > 2000) {
        return Err(invalid("the note is longer than 2000 characters"));
    }
    let at = atmos_lexicons::Datetime::now().as_str().to_string();
    if !s
        .labeler
        .store
        .set_report_status(id, &b.status, note, &actor, &at)
        .map_err(internal)?
    {
        return Err(AdminError(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("no report {id}"),
        ));
    }
    Ok(Json(
        serde_json::json!({ "id": id, "status": b.status, "actedBy": actor }),
    ))
}

/// `POST /admin/labeler/verify/{did}`: re-verifies now instead of at the next scheduled time.
#[utoipa::path(post, path = "/admin/labeler/verify/{did}", tag = "labeler-admin", security(("admin" = [])),
    params(("did" = String, Path)),
    responses((status = 200, description = "Check scheduled", body = Object), (status = 400, description = "INVALID_REQUEST", body = Object), (status = 401, description = "ADMIN_AUTH_FAILED", body = Object), (status = 500, description = "INTERNAL", body = Object)))]
pub(crate) async fn verify(
    State(s): St,
    _: Admitted,
    Path(did): Path<String>,
) -> Result<Json<serde_json::Value>, AdminError> {
    if !did.starts_with("did:") {
        return Err(invalid("not a DID"));
    }
    s.labeler.check_now(&did).map_err(internal)?;
    Ok(Json(serde_json::json!({ "scheduled": did })))
}
