//! The relay at a glance: the queue, sends by status over time, delivery latency, the operator
//! domain's DKIM records against DNS (and which keys are being rotated out), the labeler.

use super::{AdminError, bad_query, internal};
use crate::http::AppState;
use crate::http::access::Operator;
use crate::store::{dkim_keys, now_ms, queue, series};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use std::sync::Arc;

/// `GET /admin/overview?range=`: everything the operator's first page shows.
#[utoipa::path(get, path = "/admin/overview", tag = "admin", security(("admin" = [])), params(crate::http::member::RangeQuery),
    responses((status = 200, description = "Queue, series, latency, operator DKIM, labeler", body = Object), crate::http::error::AdminErrors))]
pub async fn overview(
    State(state): State<Arc<AppState>>,
    _: Operator,
    q: Result<Query<crate::http::member::RangeQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, AdminError> {
    let Query(q) = q.map_err(bad_query)?;
    let series = crate::http::member::series_answer(&state, None, q.range.as_deref())
        .map_err(|_| super::invalid("range: 24h, 7d or 30d"))?;
    let now = now_ms();
    let config = state.web.enrollment.config();
    let operator_domain = config.server.operator_domain.clone();
    let (depth, oldest, by_status, latency, keys) = state
        .store
        .with(|c| {
            Ok((
                queue::queue_depth(c)?,
                queue::oldest_queued_at(c)?,
                queue::count_by_status(c)?,
                series::delivery_latency(c, now - 86_400_000)?,
                dkim_keys::published(
                    c,
                    &operator_domain,
                    now - crate::operator::RETIRED_LISTING_MS,
                )?,
            ))
        })
        .map_err(internal)?;
    let records = crate::operator::dns_records(&state.store, config).map_err(internal)?;
    let checks = match crate::address::Domain::parse(&operator_domain) {
        Ok(d) => serde_json::to_value(state.web.enrollment.check_records(&d, &records).await)
            .unwrap_or_default(),
        Err(_) => serde_json::Value::Array(Vec::new()),
    };
    let labeler = state.labeler.as_ref().map(|l| {
        serde_json::json!({
            "did": l.did(),
            "serviceRecord": atmos_labeler::service_record::record(atmos_lexicons::Datetime::now().as_str()),
        })
    });
    Ok(Json(serde_json::json!({
        "queue": {
            "depth": depth,
            "oldestReceivedAt": oldest,
            "byStatus": by_status.into_iter().map(|(s, n)| serde_json::json!({"status": s, "count": n})).collect::<Vec<_>>(),
        },
        "series": series,
        "latency": { "delivered": latency.0, "p50Ms": latency.1, "p95Ms": latency.2 },
        "operatorDomain": operator_domain,
        "operatorDkim": {
            "records": checks,
            "keys": keys.iter().map(|k| serde_json::json!({
                "selector": k.selector, "algorithm": k.algorithm, "createdAt": k.created_at, "retiredAt": k.retired_at,
            })).collect::<Vec<_>>(),
        },
        "labeler": labeler,
    })))
}
