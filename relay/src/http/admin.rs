//! The operator's admin API (SPEC §12): `Authorization: Bearer $ADMIN_TOKEN`, compared in
//! constant time; no token configured means the admin API refuses everything.

use super::AppState;
use crate::members::{self, MemberError, Transition};
use crate::store::dkim_keys;
use crate::store::events::{self, Event};
use crate::store::inbound::{self, InboundEntry};
use crate::store::members::{self as member_rows, Member, SendingDomain};
use crate::store::rules::{self as rule_verdicts, Verdict};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Environment variable holding the admin token.
pub const ADMIN_TOKEN_ENV: &str = "ADMIN_TOKEN";

pub use atmos_labeler::admin::AdminError;
use atmos_labeler::admin::{internal, invalid};

impl From<MemberError> for AdminError {
    fn from(e: MemberError) -> Self {
        match &e {
            MemberError::NotFound(_) => Self(StatusCode::NOT_FOUND, "NOT_FOUND", e.to_string()),
            MemberError::InvalidTransition { .. } => {
                Self(StatusCode::CONFLICT, "INVALID_TRANSITION", e.to_string())
            }
            _ => internal(e),
        }
    }
}

fn not_found(what: String) -> AdminError {
    AdminError(StatusCode::NOT_FOUND, "NOT_FOUND", what)
}

fn bad_query(e: QueryRejection) -> AdminError {
    invalid(format!("query: {}", e.body_text()))
}

/// Checks the bearer token against `ADMIN_TOKEN` (constant time).
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), AdminError> {
    atmos_labeler::admin::authorize(headers, state.admin_token.as_deref())
}

/// `?reason=` of the lifecycle endpoints.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ReasonQuery {
    pub reason: Option<String>,
}

/// `POST /admin/member/{did}/{action}` for approve, suspend and reactivate.
#[utoipa::path(post, path = "/admin/member/{did}/{action}", tag = "admin", security(("admin" = [])),
    params(("did" = String, Path), ("action" = String, Path, description = "approve, suspend or reactivate"), ("reason" = Option<String>, Query)),
    responses((status = 200, description = "New state", body = Object), super::error::AdminErrors))]
pub async fn member_action(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((did, action)): Path<(String, String)>,
    q: Result<Query<ReasonQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, AdminError> {
    authorize(&state, &headers)?;
    let Query(q) = q.map_err(bad_query)?;
    let t = match action.as_str() {
        "approve" => Transition::Approve,
        "suspend" => Transition::Suspend,
        "reactivate" => Transition::Reactivate,
        other => {
            return Err(not_found(format!("no action {other}")));
        }
    };
    let new_state = members::transition(&state.store, &did, t, "admin", q.reason.as_deref())?;
    Ok(Json(
        serde_json::json!({ "did": did, "state": new_state.as_str() }),
    ))
}

/// Body of `POST /admin/member/{did}/labels`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelRequest {
    pub label: String,
    /// Seconds until the label expires; absent = never.
    pub expires_in: Option<u64>,
}

/// `POST /admin/member/{did}/labels`: adds an internal label (event `label_applied`).
#[utoipa::path(post, path = "/admin/member/{did}/labels", tag = "admin", security(("admin" = [])), request_body = LabelRequest,
    params(("did" = String, Path)), responses((status = 200, description = "Label added", body = Object), super::error::AdminErrors))]
pub async fn label_add(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(did): Path<String>,
    body: Result<Json<LabelRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, AdminError> {
    authorize(&state, &headers)?;
    let Json(req) = body.map_err(|e| invalid(e.body_text()))?;
    let expires_at = req
        .expires_in
        .map(|s| crate::store::now_ms() + (s as i64).saturating_mul(1000));
    members::set_label(&state.store, &did, &req.label, true, expires_at, "admin")?;
    Ok(Json(
        serde_json::json!({ "did": did, "label": req.label, "expiresAt": expires_at }),
    ))
}

/// `DELETE /admin/member/{did}/labels/{label}` (event `label_removed`).
#[utoipa::path(delete, path = "/admin/member/{did}/labels/{label}", tag = "admin", security(("admin" = [])),
    params(("did" = String, Path), ("label" = String, Path)), responses((status = 200, description = "Label removed", body = Object), super::error::AdminErrors))]
pub async fn label_remove(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((did, label)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, AdminError> {
    authorize(&state, &headers)?;
    let removed = members::set_label(&state.store, &did, &label, false, None, "admin")?;
    if !removed {
        return Err(not_found(format!("{did} has no label {label}")));
    }
    Ok(Json(
        serde_json::json!({ "did": did, "label": label, "removed": true }),
    ))
}

/// Filters of `GET /admin/queue`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct QueueQuery {
    pub status: Option<String>,
    pub did: Option<String>,
    pub domain: Option<String>,
    pub limit: Option<u32>,
}

/// `GET /admin/queue?status=&did=&domain=`: recipients not yet delivered or bounced.
#[utoipa::path(get, path = "/admin/queue", tag = "admin", security(("admin" = [])), params(QueueQuery),
    responses((status = 200, description = "Queued recipients", body = Vec<crate::store::messages::QueueEntry>), super::error::AdminErrors))]
pub async fn queue_list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<QueueQuery>, QueryRejection>,
) -> Result<Json<Vec<crate::store::messages::QueueEntry>>, AdminError> {
    authorize(&state, &headers)?;
    let Query(q) = q.map_err(bad_query)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    state
        .store
        .with(|c| {
            crate::store::messages::queue(
                c,
                q.status.as_deref(),
                q.did.as_deref(),
                q.domain.as_deref(),
                limit,
            )
        })
        .map(Json)
        .map_err(internal)
}

/// `POST /admin/queue/{message_id}/retry`: due now (delivery picks it up within a second).
#[utoipa::path(post, path = "/admin/queue/{id}/retry", tag = "admin", security(("admin" = [])), params(("id" = String, Path)),
    responses((status = 200, description = "Due now", body = Object), super::error::AdminErrors))]
pub async fn queue_retry(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, AdminError> {
    authorize(&state, &headers)?;
    let now = crate::store::now_ms();
    let n = state
        .store
        .with(|c| crate::store::messages::retry_now(c, &id, now))
        .map_err(internal)?;
    if n == 0 {
        return Err(not_found(format!("no queued recipients of {id}")));
    }
    Ok(Json(
        serde_json::json!({ "messageId": id, "recipients": n }),
    ))
}

/// `DELETE /admin/queue/{message_id}`: removes the message and its recipients (event recorded).
#[utoipa::path(delete, path = "/admin/queue/{id}", tag = "admin", security(("admin" = [])), params(("id" = String, Path)),
    responses((status = 200, description = "Deleted", body = Object), super::error::AdminErrors))]
pub async fn queue_delete(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, AdminError> {
    authorize(&state, &headers)?;
    let now = crate::store::now_ms();
    let deleted = state
        .store
        .write(|tx| {
            let origin = crate::store::messages::origin(tx, &id)?;
            let deleted = crate::store::messages::delete(tx, &id)?;
            if deleted {
                events::append(
                    tx,
                    now,
                    &crate::store::events::NewEvent {
                        kind: "message_deleted",
                        did: origin.as_ref().map(|o| o.0.as_str()),
                        message_id: Some(&id),
                        actor: Some("admin"),
                        ..Default::default()
                    },
                )?;
            }
            Ok(deleted)
        })
        .map_err(internal)?;
    if !deleted {
        return Err(not_found(format!("no message {id}")));
    }
    Ok(Json(
        serde_json::json!({ "messageId": id, "deleted": true }),
    ))
}

/// A member as the admin API lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberSummary {
    pub did: String,
    pub handle: Option<String>,
    pub state: &'static str,
    pub state_reason: Option<String>,
    pub created_at: i64,
    pub approved_at: Option<i64>,
    pub domains: Vec<String>,
}

fn summary(m: Member, domains: Vec<SendingDomain>) -> MemberSummary {
    MemberSummary {
        state: m.state.as_str(),
        did: m.did,
        handle: m.handle,
        state_reason: m.state_reason,
        created_at: m.created_at,
        approved_at: m.approved_at,
        domains: domains.into_iter().map(|d| d.domain).collect(),
    }
}

/// `GET /admin/members`: pending first.
#[utoipa::path(get, path = "/admin/members", tag = "admin", security(("admin" = [])),
    responses((status = 200, description = "Members, pending first", body = Vec<MemberSummary>), super::error::AdminErrors))]
pub async fn members_list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Vec<MemberSummary>>, AdminError> {
    authorize(&state, &headers)?;
    state
        .store
        .with(|c| {
            member_rows::list(c)?
                .into_iter()
                .map(|m| {
                    let d = member_rows::domains_of(c, &m.did)?;
                    Ok(summary(m, d))
                })
                .collect()
        })
        .map(Json)
        .map_err(internal)
}

/// One sending domain with its DKIM selectors.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainDetail {
    pub domain: String,
    pub forward_to: Option<String>,
    pub dkim_selectors: Vec<String>,
}

/// `GET /admin/members/{did}`: the member, its domains and DKIM selectors, recent events.
#[utoipa::path(get, path = "/admin/members/{did}", tag = "admin", security(("admin" = [])), params(("did" = String, Path)),
    responses((status = 200, description = "Member, domains, events", body = Object), super::error::AdminErrors))]
pub async fn member_detail(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(did): Path<String>,
) -> Result<Json<serde_json::Value>, AdminError> {
    authorize(&state, &headers)?;
    let found = state
        .store
        .with(|c| {
            let Some(m) = member_rows::get(c, &did)? else {
                return Ok(None);
            };
            let domains = member_rows::domains_of(c, &did)?;
            let mut detail = Vec::new();
            for d in &domains {
                let selectors = dkim_keys::active(c, &d.domain)?
                    .into_iter()
                    .map(|k| k.selector)
                    .collect();
                detail.push(DomainDetail {
                    domain: d.domain.clone(),
                    forward_to: d.forward_to.clone(),
                    dkim_selectors: selectors,
                });
            }
            let recent = events::list(c, Some(&did), None, 50)?;
            Ok(Some((summary(m, domains), detail, recent)))
        })
        .map_err(internal)?;
    let Some((member, domains, recent)) = found else {
        return Err(not_found(format!("no member {did}")));
    };
    Ok(Json(
        serde_json::json!({ "member": member, "domains": domains, "events": recent }),
    ))
}

/// Filters of `GET /admin/verdicts` and `GET /admin/shadow-verdicts`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VerdictQuery {
    pub did: Option<String>,
    pub limit: Option<u32>,
}

fn verdicts(
    state: &AppState,
    headers: &HeaderMap,
    q: Result<Query<VerdictQuery>, QueryRejection>,
    shadow: Option<bool>,
) -> Result<Json<Vec<Verdict>>, AdminError> {
    authorize(state, headers)?;
    let Query(q) = q.map_err(bad_query)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    state
        .store
        .with(|c| rule_verdicts::list(c, shadow, q.did.as_deref(), limit))
        .map(Json)
        .map_err(internal)
}

/// `GET /admin/shadow-verdicts?did=&limit=`: what `shadow` rules and `shadow:` labels would have
/// done, newest first (recorded, never enforced).
#[utoipa::path(get, path = "/admin/shadow-verdicts", tag = "admin", security(("admin" = [])), params(VerdictQuery),
    responses((status = 200, description = "Shadow verdicts, newest first", body = Vec<Verdict>), super::error::AdminErrors))]
pub async fn shadow_verdicts(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<VerdictQuery>, QueryRejection>,
) -> Result<Json<Vec<Verdict>>, AdminError> {
    verdicts(&state, &headers, q, Some(true))
}

/// `GET /admin/verdicts?did=&limit=`: every verdict of the rules engine, newest first.
#[utoipa::path(get, path = "/admin/verdicts", tag = "admin", security(("admin" = [])), params(VerdictQuery),
    responses((status = 200, description = "Verdicts, newest first", body = Vec<Verdict>), super::error::AdminErrors))]
pub async fn verdicts_list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<VerdictQuery>, QueryRejection>,
) -> Result<Json<Vec<Verdict>>, AdminError> {
    verdicts(&state, &headers, q, None)
}

/// Filters of `GET /admin/inbound`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InboundQuery {
    /// `dsn`, `arf`, `operator`, `reply`, `srs_bounce` or `other`.
    pub classification: Option<String>,
    pub did: Option<String>,
    pub limit: Option<u32>,
}

/// Classifications of the inbound log.
const INBOUND_CLASSES: [&str; 6] = ["dsn", "arf", "operator", "reply", "srs_bounce", "other"];

/// `GET /admin/inbound?classification=&did=&limit=`: the inbound log, newest first.
#[utoipa::path(get, path = "/admin/inbound", tag = "admin", security(("admin" = [])), params(InboundQuery),
    responses((status = 200, description = "Inbound messages, newest first", body = Vec<InboundEntry>), super::error::AdminErrors))]
pub async fn inbound_list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<InboundQuery>, QueryRejection>,
) -> Result<Json<Vec<InboundEntry>>, AdminError> {
    authorize(&state, &headers)?;
    let Query(q) = q.map_err(bad_query)?;
    if let Some(c) = q.classification.as_deref()
        && !INBOUND_CLASSES.contains(&c)
    {
        return Err(invalid(format!(
            "classification: {c:?} is not one of {}",
            INBOUND_CLASSES.join(", ")
        )));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    state
        .store
        .with(|c| inbound::list(c, q.classification.as_deref(), q.did.as_deref(), limit))
        .map(Json)
        .map_err(internal)
}

/// Filters of `GET /admin/events`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    pub did: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub limit: Option<u32>,
}

/// `GET /admin/events?did=&type=&limit=`, newest first.
#[utoipa::path(get, path = "/admin/events", tag = "admin", security(("admin" = [])), params(EventQuery),
    responses((status = 200, description = "Events, newest first", body = Vec<Event>), super::error::AdminErrors))]
pub async fn events_list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<EventQuery>, QueryRejection>,
) -> Result<Json<Vec<Event>>, AdminError> {
    authorize(&state, &headers)?;
    let Query(q) = q.map_err(bad_query)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    state
        .store
        .with(|c| events::list(c, q.did.as_deref(), q.kind.as_deref(), limit))
        .map(Json)
        .map_err(internal)
}
