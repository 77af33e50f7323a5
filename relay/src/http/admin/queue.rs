//! The queue browser: recipients not yet final, retry now, delete, and bulk actions.

use super::{AdminError, bad_query, internal, invalid, nonempty, not_found};
use crate::http::AppState;
use crate::http::access::Operator;
use crate::store::events;
use crate::store::queue::{self, QueueFilter};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use std::sync::Arc;

/// Filters of `GET /admin/queue` (and of a bulk action's selection).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams, utoipa::ToSchema)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QueueQuery {
    /// `accepted` or `deferred`.
    pub status: Option<String>,
    pub did: Option<String>,
    /// The recipient's domain.
    pub domain: Option<String>,
    /// Only messages older than this many seconds.
    pub older_than: Option<i64>,
    pub limit: Option<u32>,
}

impl QueueQuery {
    fn filter(&self, now: i64) -> Result<QueueFilter<'_>, AdminError> {
        if let Some(s) = self.status.as_deref()
            && !matches!(s, "accepted" | "deferred")
        {
            return Err(invalid(format!(
                "status: {s:?} is not accepted or deferred"
            )));
        }
        Ok(QueueFilter {
            status: self.status.as_deref(),
            did: nonempty(&self.did),
            domain: nonempty(&self.domain),
            received_before: self
                .older_than
                .map(|s| now - s.clamp(0, 365 * 86_400) * 1000),
        })
    }
}

/// `GET /admin/queue?status=&did=&domain=&olderThan=`: recipients not yet delivered or bounced,
/// with how many the filter selects in all.
#[utoipa::path(get, path = "/admin/queue", tag = "admin", security(("admin" = [])), params(QueueQuery),
    responses((status = 200, description = "Queued recipients (at most `limit`) and the selection's size", body = Object), crate::http::error::AdminErrors))]
pub async fn queue_list(
    State(state): State<Arc<AppState>>,
    _: Operator,
    q: Result<Query<QueueQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, AdminError> {
    let Query(q) = q.map_err(bad_query)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let filter = q.filter(crate::store::now_ms())?;
    let (entries, (recipients, messages)) = state
        .store
        .with(|c| {
            Ok((
                queue::queue(c, &filter, limit)?,
                queue::queue_count(c, &filter)?,
            ))
        })
        .map_err(internal)?;
    Ok(Json(serde_json::json!({
        "entries": entries, "selected": { "recipients": recipients, "messages": messages },
    })))
}

/// Body of `POST /admin/queue/bulk`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BulkRequest {
    /// `retry` (due now) or `delete` (the selected recipients' messages).
    pub action: String,
    /// The selection, as `GET /admin/queue` takes it.
    #[serde(default)]
    pub filter: QueueQuery,
    /// How many recipients the operator confirmed; a different count refuses (409).
    pub expect: i64,
}

/// `POST /admin/queue/bulk {action, filter, expect}`: acts on every recipient a filter selects,
/// once the operator confirmed how many that is.
#[utoipa::path(post, path = "/admin/queue/bulk", tag = "admin", security(("admin" = [])), request_body = BulkRequest,
    responses((status = 200, description = "What was done", body = Object), (status = 409, description = "COUNT_CHANGED: the selection is not the size confirmed", body = Object), crate::http::error::AdminErrors))]
pub async fn queue_bulk(
    State(state): State<Arc<AppState>>,
    Operator(actor): Operator,
    body: Result<Json<BulkRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, AdminError> {
    let Json(req) = body.map_err(|e| invalid(e.body_text()))?;
    if !matches!(req.action.as_str(), "retry" | "delete") {
        return Err(invalid("action must be retry or delete"));
    }
    let now = crate::store::now_ms();
    let filter = req.filter.filter(now)?;
    let done = state
        .store
        .write(|tx| {
            let (recipients, messages) = queue::queue_count(tx, &filter)?;
            if recipients != req.expect {
                return Ok(Err((recipients, messages)));
            }
            let affected = if req.action == "retry" {
                queue::queue_retry_now(tx, &filter, now)? as i64
            } else {
                let mut n = 0;
                for (id, did) in queue::queue_messages(tx, &filter)? {
                    if crate::store::messages::delete(tx, &id)? {
                        n += 1;
                        events::append(
                            tx,
                            now,
                            &events::NewEvent {
                                kind: "message_deleted",
                                did: Some(&did),
                                message_id: Some(&id),
                                actor: Some(&actor),
                                ..Default::default()
                            },
                        )?;
                    }
                }
                n
            };
            Ok(Ok((recipients, messages, affected)))
        })
        .map_err(internal)?;
    match done {
        Ok((recipients, messages, affected)) => {
            tracing::info!(
                actor,
                action = req.action,
                recipients,
                messages,
                "admin: bulk queue action"
            );
            Ok(Json(serde_json::json!({
                "action": req.action, "recipients": recipients, "messages": messages, "affected": affected,
            })))
        }
        Err((recipients, messages)) => Err(AdminError(
            axum::http::StatusCode::CONFLICT,
            "COUNT_CHANGED",
            format!(
                "the selection now holds {recipients} recipients in {messages} messages, not {}; review and confirm again",
                req.expect
            ),
        )),
    }
}

/// `POST /admin/queue/{message_id}/retry`: due now (delivery picks it up within a second).
#[utoipa::path(post, path = "/admin/queue/{id}/retry", tag = "admin", security(("admin" = [])), params(("id" = String, Path)),
    responses((status = 200, description = "Due now", body = Object), crate::http::error::AdminErrors))]
pub async fn queue_retry(
    State(state): State<Arc<AppState>>,
    _: Operator,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, AdminError> {
    let now = crate::store::now_ms();
    let n = state
        .store
        .with(|c| queue::retry_now(c, &id, now))
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
    responses((status = 200, description = "Deleted", body = Object), crate::http::error::AdminErrors))]
pub async fn queue_delete(
    State(state): State<Arc<AppState>>,
    Operator(actor): Operator,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, AdminError> {
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
                        actor: Some(&actor),
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
