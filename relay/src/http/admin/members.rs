//! Members: approve / suspend / reactivate, internal labels, the list with search, the detail.

use super::{AdminError, bad_query, internal, invalid, not_found};
use crate::http::AppState;
use crate::http::access::Operator;
use crate::members::{self, Transition};
use crate::store::dkim_keys;
use crate::store::events;
use crate::store::members::{self as member_rows, Member, SendingDomain};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `?reason=` of the lifecycle endpoints.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ReasonQuery {
    pub reason: Option<String>,
}

/// `POST /admin/member/{did}/{action}` for approve, suspend and reactivate.
#[utoipa::path(post, path = "/admin/member/{did}/{action}", tag = "admin", security(("admin" = [])),
    params(("did" = String, Path), ("action" = String, Path, description = "approve, suspend or reactivate"), ("reason" = Option<String>, Query)),
    responses((status = 200, description = "New state", body = Object), crate::http::error::AdminErrors))]
pub async fn member_action(
    State(state): State<Arc<AppState>>,
    Operator(actor): Operator,
    Path((did, action)): Path<(String, String)>,
    q: Result<Query<ReasonQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, AdminError> {
    let Query(q) = q.map_err(bad_query)?;
    let t = match action.as_str() {
        "approve" => Transition::Approve,
        "suspend" => Transition::Suspend,
        "reactivate" => Transition::Reactivate,
        other => {
            return Err(not_found(format!("no action {other}")));
        }
    };
    // The member sees the reason on its page and in the SMTP refusal's log: it must say why.
    let reason = q.reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
    if t == Transition::Suspend && reason.is_none() {
        return Err(invalid("reason: a suspension needs a reason"));
    }
    if reason.is_some_and(|r| r.len() > 500 || r.chars().any(char::is_control)) {
        return Err(invalid(
            "reason: at most 500 characters, no control characters",
        ));
    }
    let new_state = members::transition(&state.store, &did, t, &actor, reason)?;
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
    params(("did" = String, Path)), responses((status = 200, description = "Label added", body = Object), crate::http::error::AdminErrors))]
pub async fn label_add(
    State(state): State<Arc<AppState>>,
    Operator(actor): Operator,
    Path(did): Path<String>,
    body: Result<Json<LabelRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, AdminError> {
    let Json(req) = body.map_err(|e| invalid(e.body_text()))?;
    let expires_at = req
        .expires_in
        .map(|s| crate::store::now_ms() + (s as i64).saturating_mul(1000));
    members::set_label(&state.store, &did, &req.label, true, expires_at, &actor)?;
    Ok(Json(
        serde_json::json!({ "did": did, "label": req.label, "expiresAt": expires_at }),
    ))
}

/// `DELETE /admin/member/{did}/labels/{label}` (event `label_removed`).
#[utoipa::path(delete, path = "/admin/member/{did}/labels/{label}", tag = "admin", security(("admin" = [])),
    params(("did" = String, Path), ("label" = String, Path)), responses((status = 200, description = "Label removed", body = Object), crate::http::error::AdminErrors))]
pub async fn label_remove(
    State(state): State<Arc<AppState>>,
    Operator(actor): Operator,
    Path((did, label)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, AdminError> {
    let removed = members::set_label(&state.store, &did, &label, false, None, &actor)?;
    if !removed {
        return Err(not_found(format!("{did} has no label {label}")));
    }
    Ok(Json(
        serde_json::json!({ "did": did, "label": label, "removed": true }),
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
    /// Domains the member added while active, which cannot send before an operator approves
    /// them (`POST /admin/domains/{domain}/approve`).
    pub domains_awaiting_review: Vec<String>,
}

fn summary(m: Member, domains: Vec<SendingDomain>) -> MemberSummary {
    MemberSummary {
        state: m.state.as_str(),
        did: m.did,
        handle: m.handle,
        state_reason: m.state_reason,
        created_at: m.created_at,
        approved_at: m.approved_at,
        domains_awaiting_review: domains
            .iter()
            .filter(|d| !d.approved)
            .map(|d| d.domain.clone())
            .collect(),
        domains: domains.into_iter().map(|d| d.domain).collect(),
    }
}

/// `POST /admin/domains/{domain}/approve`: a domain an active member added may send.
#[utoipa::path(post, path = "/admin/domains/{domain}/approve", tag = "admin", security(("admin" = [])),
    params(("domain" = String, Path)),
    responses((status = 200, description = "Approved", body = Object), crate::http::error::AdminErrors))]
pub async fn domain_approve(
    State(state): State<Arc<AppState>>,
    Operator(actor): Operator,
    Path(domain): Path<String>,
) -> Result<Json<serde_json::Value>, AdminError> {
    let did = members::approve_domain(&state.store, &domain, &actor)?;
    Ok(Json(serde_json::json!({
        "domain": domain.trim().to_ascii_lowercase(), "did": did, "approved": true,
    })))
}

/// `?q=&state=` of the member list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MembersQuery {
    /// Part of a DID, handle or sending domain (case-insensitive).
    pub q: Option<String>,
    /// `pending`, `active` or `suspended`.
    pub state: Option<String>,
}

/// `GET /admin/members?q=&state=`: pending members first, then members with a domain awaiting
/// review.
#[utoipa::path(get, path = "/admin/members", tag = "admin", security(("admin" = [])), params(MembersQuery),
    responses((status = 200, description = "Members: pending first, then domains awaiting review", body = Vec<MemberSummary>), crate::http::error::AdminErrors))]
pub async fn members_list(
    State(state): State<Arc<AppState>>,
    _: Operator,
    q: Result<Query<MembersQuery>, QueryRejection>,
) -> Result<Json<Vec<MemberSummary>>, AdminError> {
    let Query(q) = q.map_err(bad_query)?;
    if let Some(s) = q.state.as_deref()
        && !matches!(s, "pending" | "active" | "suspended")
    {
        return Err(invalid(format!(
            "state: {s:?} is not pending, active or suspended"
        )));
    }
    let needle =
        q.q.as_deref()
            .map(|n| n.trim().to_lowercase())
            .filter(|n| !n.is_empty());
    state
        .store
        .with(|c| {
            let mut out = Vec::new();
            for m in member_rows::list(c)? {
                if q.state.as_deref().is_some_and(|s| s != m.state.as_str()) {
                    continue;
                }
                let d = member_rows::domains_of(c, &m.did)?;
                let hit = needle.as_deref().is_none_or(|n| {
                    m.did.to_lowercase().contains(n)
                        || m.handle
                            .as_deref()
                            .is_some_and(|h| h.to_lowercase().contains(n))
                        || d.iter().any(|d| d.domain.contains(n))
                });
                if hit {
                    out.push(summary(m, d));
                }
            }
            // Stable: within each group the store's order (newest first) stays.
            out.sort_by_key(|m: &MemberSummary| {
                match (m.state, m.domains_awaiting_review.is_empty()) {
                    ("pending", _) => 0,
                    (_, false) => 1,
                    _ => 2,
                }
            });
            Ok(out)
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
    /// False while it awaits an operator's review.
    pub approved: bool,
}

/// `GET /admin/members/{did}`: the member, its domains and DKIM selectors, recent events.
#[utoipa::path(get, path = "/admin/members/{did}", tag = "admin", security(("admin" = [])), params(("did" = String, Path)),
    responses((status = 200, description = "Member, domains, events", body = Object), crate::http::error::AdminErrors))]
pub async fn member_detail(
    State(state): State<Arc<AppState>>,
    _: Operator,
    Path(did): Path<String>,
) -> Result<Json<serde_json::Value>, AdminError> {
    let found = state
        .store
        .with(|c| {
            let Some(m) = member_rows::get(c, &did)? else {
                return Ok(None);
            };
            let domains = member_rows::domains_of(c, &did)?;
            let mut detail = Vec::new();
            for d in &domains {
                let selectors = dkim_keys::current(c, &d.domain)?
                    .into_iter()
                    .map(|k| k.selector)
                    .collect();
                detail.push(DomainDetail {
                    domain: d.domain.clone(),
                    forward_to: d.forward_to.clone(),
                    dkim_selectors: selectors,
                    approved: d.approved,
                });
            }
            let recent = events::list(c, Some(&did), None, 50)?;
            let verdicts = crate::store::rules::list(c, None, Some(&did), 50)?;
            let labels = crate::store::labels::with_expiry(c, &did, crate::store::now_ms())?;
            Ok(Some((
                summary(m, domains),
                detail,
                recent,
                verdicts,
                labels,
            )))
        })
        .map_err(internal)?;
    let Some((member, domains, recent, verdicts, labels)) = found else {
        return Err(not_found(format!("no member {did}")));
    };
    let (public_labels, attestations) = match &state.labeler {
        Some(l) => (
            l.store.standing(&did).unwrap_or_default(),
            l.store.attestations(&did).ok().flatten(),
        ),
        None => (Vec::new(), None),
    };
    Ok(Json(serde_json::json!({
        "member": member,
        "domains": domains,
        "events": recent,
        "verdicts": verdicts,
        "labels": labels.iter().map(|(l, e)| serde_json::json!({"label": l, "expiresAt": e})).collect::<Vec<_>>(),
        "publicLabels": public_labels,
        "attestations": attestations,
    })))
}

/// `GET /admin/members/{did}/series?range=`: the member's send history, as its own page shows it.
#[utoipa::path(get, path = "/admin/members/{did}/series", tag = "admin", security(("admin" = [])),
    params(("did" = String, Path), crate::http::member::RangeQuery),
    responses((status = 200, description = "Buckets (oldest first) and thresholds", body = Object), crate::http::error::AdminErrors))]
pub async fn member_series(
    State(state): State<Arc<AppState>>,
    _: Operator,
    Path(did): Path<String>,
    q: Result<Query<crate::http::member::RangeQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, AdminError> {
    let Query(q) = q.map_err(bad_query)?;
    crate::http::member::series_answer(&state, Some(&did), q.range.as_deref())
        .map(Json)
        .map_err(|_| invalid("range: 24h, 7d or 30d"))
}

/// `GET /admin/members/{did}/dns/{domain}`: the member's records for one domain against DNS.
#[utoipa::path(get, path = "/admin/members/{did}/dns/{domain}", tag = "admin", security(("admin" = [])),
    params(("did" = String, Path), ("domain" = String, Path)),
    responses((status = 200, description = "Per record: expected, observed, verdict", body = Object), crate::http::error::AdminErrors))]
pub async fn member_dns(
    State(state): State<Arc<AppState>>,
    _: Operator,
    Path((did, domain)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, AdminError> {
    match state.web.enrollment.check_domain(&did, &domain).await {
        Ok(records) => Ok(Json(
            serde_json::json!({ "domain": domain, "records": records }),
        )),
        Err(crate::enrollment::EnrollError::NotYours(_)) => {
            Err(not_found(format!("{did} has no domain {domain}")))
        }
        Err(e) => Err(invalid(e.to_string())),
    }
}
