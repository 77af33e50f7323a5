//! What happened: events, rule verdicts (and shadow verdicts), the inbound log.

use super::{AdminError, bad_query, internal, invalid, nonempty};
use crate::http::AppState;
use crate::http::access::Operator;
use crate::store::events::{self, Event};
use crate::store::inbound_log::{self, InboundEntry};
use crate::store::rules::{self as rule_verdicts, Verdict};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::Deserialize;
use std::sync::Arc;

/// Filters of `GET /admin/verdicts` and `GET /admin/shadow-verdicts`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VerdictQuery {
    pub did: Option<String>,
    /// One rule's verdicts.
    pub rule: Option<String>,
    /// Since (ms).
    pub since: Option<i64>,
    /// Before (ms).
    pub until: Option<i64>,
    pub limit: Option<u32>,
}

fn verdicts(
    state: &AppState,
    q: Result<Query<VerdictQuery>, QueryRejection>,
    shadow: Option<bool>,
) -> Result<Json<Vec<Verdict>>, AdminError> {
    let Query(q) = q.map_err(bad_query)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    state
        .store
        .with(|c| {
            rule_verdicts::list_filtered(
                c,
                shadow,
                nonempty(&q.did),
                nonempty(&q.rule),
                (q.since, q.until),
                limit,
            )
        })
        .map(Json)
        .map_err(internal)
}

/// `GET /admin/shadow-verdicts?did=&rule=&since=&until=&limit=`: what `shadow` rules and `shadow:` labels would have
/// done, newest first (recorded, never enforced).
#[utoipa::path(get, path = "/admin/shadow-verdicts", tag = "admin", security(("admin" = [])), params(VerdictQuery),
    responses((status = 200, description = "Shadow verdicts, newest first", body = Vec<Verdict>), crate::http::error::AdminErrors))]
pub async fn shadow_verdicts(
    State(state): State<Arc<AppState>>,
    _: Operator,
    q: Result<Query<VerdictQuery>, QueryRejection>,
) -> Result<Json<Vec<Verdict>>, AdminError> {
    verdicts(&state, q, Some(true))
}

/// `GET /admin/verdicts?did=&rule=&since=&until=&limit=`: every verdict of the rules engine, newest first.
#[utoipa::path(get, path = "/admin/verdicts", tag = "admin", security(("admin" = [])), params(VerdictQuery),
    responses((status = 200, description = "Verdicts, newest first", body = Vec<Verdict>), crate::http::error::AdminErrors))]
pub async fn verdicts_list(
    State(state): State<Arc<AppState>>,
    _: Operator,
    q: Result<Query<VerdictQuery>, QueryRejection>,
) -> Result<Json<Vec<Verdict>>, AdminError> {
    verdicts(&state, q, None)
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
    responses((status = 200, description = "Inbound messages, newest first", body = Vec<InboundEntry>), crate::http::error::AdminErrors))]
pub async fn inbound_list(
    State(state): State<Arc<AppState>>,
    _: Operator,
    q: Result<Query<InboundQuery>, QueryRejection>,
) -> Result<Json<Vec<InboundEntry>>, AdminError> {
    let Query(q) = q.map_err(bad_query)?;
    if let Some(c) = nonempty(&q.classification)
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
        .with(|c| inbound_log::list(c, nonempty(&q.classification), nonempty(&q.did), limit))
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
    /// From (ms).
    pub since: Option<i64>,
    /// Until, exclusive (ms).
    pub until: Option<i64>,
    pub limit: Option<u32>,
}

/// `GET /admin/events?did=&type=&since=&until=&limit=`, newest first.
#[utoipa::path(get, path = "/admin/events", tag = "admin", security(("admin" = [])), params(EventQuery),
    responses((status = 200, description = "Events, newest first", body = Vec<Event>), crate::http::error::AdminErrors))]
pub async fn events_list(
    State(state): State<Arc<AppState>>,
    _: Operator,
    q: Result<Query<EventQuery>, QueryRejection>,
) -> Result<Json<Vec<Event>>, AdminError> {
    let Query(q) = q.map_err(bad_query)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    state
        .store
        .with(|c| {
            events::list_between(
                c,
                nonempty(&q.did),
                nonempty(&q.kind),
                q.since,
                q.until,
                limit,
            )
        })
        .map(Json)
        .map_err(internal)
}
