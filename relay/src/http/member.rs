//! The member API (BEHAVIOUR §12; an API key or the member's web session): status, metrics and
//! their time series, forward-to, and the suppression list.

use super::AppState;
use super::access::Account;
use super::error::ApiError;
use crate::accept::SubmitError;
use crate::store::suppressions::{self, Suppression};
use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use std::sync::Arc;

/// `GET /member/suppressions`.
#[utoipa::path(get, path = "/member/suppressions", tag = "member", security(("member" = [])),
    responses((status = 200, description = "The suppression list", body = Vec<Suppression>), super::error::MemberErrors))]
pub async fn suppressions_list(
    State(state): State<Arc<AppState>>,
    Account(member): Account,
) -> Result<Json<Vec<Suppression>>, ApiError> {
    Ok(Json(
        state
            .store
            .with(|c| suppressions::list(c, &member.did))
            .map_err(SubmitError::from)?,
    ))
}

/// `?address=` of the delete endpoint.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AddressQuery {
    pub address: String,
}

/// `DELETE /member/suppressions?address=`: complaints cannot be removed.
#[utoipa::path(delete, path = "/member/suppressions", tag = "member", params(AddressQuery), security(("member" = [])),
    responses((status = 200, description = "Removed", body = Object), super::error::MemberErrors))]
pub async fn suppressions_delete(
    State(state): State<Arc<AppState>>,
    Account(member): Account,
    query: Result<Query<AddressQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = query.map_err(|e| SubmitError::InvalidRequest(format!("query: {e}")))?;
    let address = crate::address::Mailbox::parse(&q.address).map_err(|e| {
        SubmitError::InvalidRequest(format!(
            "address: {:?} is not a valid address: it {e}",
            q.address
        ))
    })?;
    match state
        .store
        .with(|c| suppressions::remove(c, &member.did, address.as_str()))
        .map_err(SubmitError::from)?
    {
        Some(true) => Ok(Json(
            serde_json::json!({ "address": q.address, "removed": true }),
        )),
        Some(false) => Err(SubmitError::InvalidRequest(format!(
            "address: {} is suppressed for a complaint and cannot be removed",
            q.address
        ))
        .into()),
        None => Err(ApiError::NotFound(format!("suppression of {}", q.address))),
    }
}

/// `GET /member/status`: state, labels, tier, caps and usage.
#[utoipa::path(get, path = "/member/status", tag = "member", security(("member" = [])),
    responses((status = 200, description = "State, labels, tier, caps, usage, domains", body = Object), super::error::MemberErrors))]
pub async fn status(
    State(state): State<Arc<AppState>>,
    Account(member): Account,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = crate::store::now_ms();
    let (caps, labels, hour, day) = state
        .store
        .with(|c| crate::warming::usage(c, &member, &state.limits, now))
        .map_err(SubmitError::from)?;
    let domains = state
        .store
        .with(|c| crate::store::members::domains_of(c, &member.did))
        .map_err(SubmitError::from)?;
    let public_labels = match &state.labeler {
        Some(l) => l.store.standing(&member.did).unwrap_or_default(),
        None => Vec::new(),
    };
    Ok(Json(serde_json::json!({
        "did": member.did,
        "handle": member.handle,
        "state": member.state.as_str(),
        "stateReason": member.state_reason,
        "createdAt": member.created_at,
        "approvedAt": member.approved_at,
        "labels": labels,
        "publicLabels": public_labels,
        "tier": caps.tier.name(),
        "caps": { "hourly": caps.hourly, "daily": caps.daily },
        "usage": { "lastHour": hour, "lastDay": day },
        "domains": domains.iter().map(|d| serde_json::json!({"domain": d.domain, "forwardTo": d.forward_to, "approved": d.approved})).collect::<Vec<_>>(),
    })))
}

/// `GET /member/metrics`: recipients by status for 1 h, 24 h, 7 d and 30 d, with bounce and
/// complaint rates.
#[utoipa::path(get, path = "/member/metrics", tag = "member", security(("member" = [])),
    responses((status = 200, description = "Counts and rates per window", body = Object), super::error::MemberErrors))]
pub async fn metrics(
    State(state): State<Arc<AppState>>,
    Account(member): Account,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now = crate::store::now_ms();
    let mut out = serde_json::Map::new();
    for (name, window) in [
        ("1h", 3_600_000i64),
        ("24h", 86_400_000),
        ("7d", 7 * 86_400_000),
        ("30d", 30 * 86_400_000),
    ] {
        let (counts, complaints) = state
            .store
            .with(|c| {
                Ok((
                    crate::store::messages::member_counts_since(c, &member.did, now - window)?,
                    crate::store::events::count_since(
                        c,
                        &member.did,
                        "complaint_received",
                        now - window,
                    )?,
                ))
            })
            .map_err(SubmitError::from)?;
        let get = |s: &str| {
            counts
                .iter()
                .find(|(k, _)| k == s)
                .map(|(_, n)| *n)
                .unwrap_or(0)
        };
        let total: i64 = counts.iter().map(|(_, n)| n).sum();
        let rate = |n: i64| {
            if total > 0 {
                n as f64 / total as f64
            } else {
                0.0
            }
        };
        out.insert(
            name.into(),
            serde_json::json!({
                "accepted": get("accepted"), "deferred": get("deferred"), "sent": get("sent"), "bounced": get("bounced"),
                "complaints": complaints, "bounceRate": rate(get("bounced")), "complaintRate": rate(complaints),
            }),
        );
    }
    Ok(Json(serde_json::Value::Object(out)))
}

/// `?range=` of the series endpoints: `24h` (hourly buckets), `7d` (6-hourly) or `30d` (daily).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    pub range: Option<String>,
}

/// (bucket length in ms, number of buckets) of a range.
fn range_buckets(range: &str) -> Option<(i64, i64)> {
    const HOUR: i64 = 3_600_000;
    match range {
        "24h" => Some((HOUR, 24)),
        "7d" => Some((6 * HOUR, 28)),
        "30d" => Some((24 * HOUR, 30)),
        _ => None,
    }
}

/// The series of `did` (all members when `None`) over `range`, with the suspension thresholds
/// of the active rules, as the series endpoints answer it.
pub(super) fn series_answer(
    state: &AppState,
    did: Option<&str>,
    range: Option<&str>,
) -> Result<serde_json::Value, ApiError> {
    let range = range.unwrap_or("24h");
    let (bucket_ms, n) = range_buckets(range).ok_or_else(|| {
        SubmitError::InvalidRequest(format!("range: {range:?} is not 24h, 7d or 30d"))
    })?;
    let now = crate::store::now_ms();
    let buckets = state
        .store
        .with(|c| crate::store::series::series(c, did, now, bucket_ms, n))
        .map_err(SubmitError::from)?;
    Ok(serde_json::json!({
        "range": range,
        "bucketMs": bucket_ms,
        "buckets": buckets,
        "thresholds": state.thresholds(),
    }))
}

/// `GET /member/metrics/series?range=`: recipients by state and complaints per bucket, and the
/// rates at which the active rules suspend.
#[utoipa::path(get, path = "/member/metrics/series", tag = "member", params(RangeQuery), security(("member" = [])),
    responses((status = 200, description = "Buckets (oldest first) and thresholds", body = Object), super::error::MemberErrors))]
pub async fn metrics_series(
    State(state): State<Arc<AppState>>,
    Account(member): Account,
    query: Result<Query<RangeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = query.map_err(|e| SubmitError::InvalidRequest(format!("query: {e}")))?;
    Ok(Json(series_answer(
        &state,
        Some(&member.did),
        q.range.as_deref(),
    )?))
}

/// Body of `PUT /member/forward-to`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ForwardTo {
    pub domain: String,
    /// Where bounce notices for `domain` go; `null` clears it.
    pub address: Option<String>,
}

/// `PUT /member/forward-to`.
#[utoipa::path(put, path = "/member/forward-to", tag = "member", request_body = ForwardTo, security(("member" = [])),
    responses((status = 200, description = "Updated", body = Object), super::error::MemberErrors))]
pub async fn forward_to(
    State(state): State<Arc<AppState>>,
    Account(member): Account,
    body: Result<Json<ForwardTo>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(req) =
        body.map_err(|e| SubmitError::InvalidRequest(format!("body: {}", e.body_text())))?;
    // A web session admits any member state; forwarding is for members the operator approved
    // (clearing the address is always allowed).
    if req.address.is_some() && member.state != crate::store::members::MemberState::Active {
        return Err(not_active(&member));
    }
    let domain = crate::address::Domain::parse(&req.domain)
        .map_err(|e| SubmitError::InvalidRequest(format!("domain: {:?} {e}", req.domain)))?;
    let address = req
        .address
        .as_deref()
        .map(crate::address::Mailbox::parse)
        .transpose()
        .map_err(|e| {
            SubmitError::InvalidRequest(format!(
                "address: {:?} is not a valid address: it {e}",
                req.address.as_deref().unwrap_or_default()
            ))
        })?;
    let owner = state
        .store
        .with(|c| crate::store::members::domain_owner(c, domain.as_str()))
        .map_err(SubmitError::from)?;
    if owner.as_deref() != Some(member.did.as_str()) {
        return Err(SubmitError::DomainMismatch(format!(
            "{domain} is not a sending domain of {}",
            member.did
        ))
        .into());
    }
    state
        .store
        .with(|c| crate::store::members::set_forward_to(c, domain.as_str(), address.as_ref()))
        .map_err(SubmitError::from)?;
    Ok(Json(
        serde_json::json!({ "domain": domain, "forwardTo": address }),
    ))
}

/// 403 `MEMBER_NOT_ACTIVE`: what only an approved, unsuspended member may do.
pub(super) fn not_active(member: &crate::store::members::Member) -> ApiError {
    ApiError::coded(
        403,
        "MEMBER_NOT_ACTIVE",
        format!(
            "your membership is {}: forwarding starts once an operator approves it",
            member.state.as_str()
        ),
    )
}
