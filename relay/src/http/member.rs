//! The member API (API-key auth): the suppression list (`GET`/`DELETE /member/suppressions`).

use super::AppState;
use super::credentials;
use super::error::ApiError;
use crate::accept::SubmitError;
use crate::store::suppressions::{self, Suppression};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use std::sync::Arc;

/// `GET /member/suppressions`.
pub async fn suppressions_list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Vec<Suppression>>, ApiError> {
    let member = credentials::member(&state, &headers).await?;
    Ok(Json(
        state
            .store
            .with(|c| suppressions::list(c, &member.did))
            .map_err(SubmitError::from)?,
    ))
}

/// `?address=` of the delete endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressQuery {
    pub address: String,
}

/// `DELETE /member/suppressions?address=`: complaints cannot be removed.
pub async fn suppressions_delete(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<AddressQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let member = credentials::member(&state, &headers).await?;
    let Query(q) = query.map_err(|e| SubmitError::InvalidRequest(format!("query: {e}")))?;
    match state
        .store
        .with(|c| suppressions::remove(c, &member.did, &q.address))
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
