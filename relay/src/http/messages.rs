//! Per-message status (BEHAVIOUR §12; the original lacked it): `GET /v1/messages/{id}` and
//! `GET /v1/messages?status=&since=&until=&recipient=&category=&cursor=`, each recipient with
//! its attempts.

use super::AppState;
use super::access::Account;
use super::error::ApiError;
use crate::accept::SubmitError;
use crate::store::messages::{self, AttemptView, MessageView, RecipientStatus};
use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

const PAGE: u32 = 50;

/// One recipient with its attempts.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecipientStatusView {
    pub recipient: String,
    pub status: RecipientStatus,
    pub attempts: Vec<AttemptView>,
}

/// A message with its recipients.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MessageStatus {
    #[serde(flatten)]
    pub message: MessageView,
    pub recipients: Vec<RecipientStatusView>,
}

fn status_of(state: &AppState, m: MessageView) -> Result<MessageStatus, ApiError> {
    let recipients = state
        .store
        .with(|c| {
            messages::recipients_of(c, &m.id)?
                .into_iter()
                .map(|r| {
                    Ok(RecipientStatusView {
                        attempts: messages::attempts_of(c, &m.id, &r.address)?,
                        recipient: r.address,
                        status: r.status,
                    })
                })
                .collect()
        })
        .map_err(SubmitError::from)?;
    Ok(MessageStatus {
        message: m,
        recipients,
    })
}

/// `GET /v1/messages/{id}`: only the sender's own messages are visible.
#[utoipa::path(
    get, path = "/v1/messages/{id}", tag = "status",
    params(("id" = String, Path, description = "Message id from /v1/send or the SMTP 250 reply")),
    security(("member" = [])),
    responses(
        (status = 200, description = "The message and each recipient's attempts", body = MessageStatus),
        (status = 400, description = "AUTH_REQUIRED or INVALID_DID", body = super::error::ErrorBody),
        (status = 401, description = "AUTH_FAILED", body = super::error::ErrorBody),
        (status = 403, description = "MEMBER_PENDING or MEMBER_SUSPENDED", body = super::error::ErrorBody),
        (status = 404, description = "NOT_FOUND", body = super::error::ErrorBody),
        (status = 500, description = "INTERNAL", body = super::error::ErrorBody),
    )
)]
pub async fn one(
    State(state): State<Arc<AppState>>,
    Account(member): Account,
    Path(id): Path<String>,
) -> Result<Json<MessageStatus>, ApiError> {
    let found = state
        .store
        .with(|c| messages::get(c, &id))
        .map_err(SubmitError::from)?;
    match found {
        Some(m) if m.did == member.did => Ok(Json(status_of(&state, m)?)),
        _ => Err(ApiError::NotFound(format!("message {id}"))),
    }
}

/// Query of the list endpoint.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Messages with a recipient in this state.
    pub status: Option<String>,
    /// Arrived at or after (milliseconds since the epoch).
    pub since: Option<i64>,
    /// Arrived before (milliseconds since the epoch).
    pub until: Option<i64>,
    /// Messages with a recipient whose address contains this (case-insensitive).
    pub recipient: Option<String>,
    /// The message's category (`X-Atmos-Category`).
    pub category: Option<String>,
    pub cursor: Option<String>,
}

/// A page of messages.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MessagePage {
    pub messages: Vec<MessageStatus>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// `GET /v1/messages?status=&since=&until=&recipient=&category=&cursor=`, newest first.
#[utoipa::path(
    get, path = "/v1/messages", tag = "status",
    params(ListQuery),
    security(("member" = [])),
    responses(
        (status = 200, description = "A page of messages, newest first", body = MessagePage),
        (status = 400, description = "AUTH_REQUIRED, INVALID_DID or INVALID_REQUEST", body = super::error::ErrorBody),
        (status = 401, description = "AUTH_FAILED", body = super::error::ErrorBody),
        (status = 403, description = "MEMBER_PENDING or MEMBER_SUSPENDED", body = super::error::ErrorBody),
        (status = 500, description = "INTERNAL", body = super::error::ErrorBody),
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Account(member): Account,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<MessagePage>, ApiError> {
    let Query(q) = query.map_err(|e| SubmitError::InvalidRequest(format!("query: {e}")))?;
    if let Some(s) = &q.status
        && RecipientStatus::parse(s).is_none()
    {
        return Err(SubmitError::InvalidRequest(
            "status: one of accepted, deferred, sent, bounced".into(),
        )
        .into());
    }
    let text = |name: &str, v: &Option<String>| match v.as_deref().map(str::trim) {
        Some(t) if t.len() > 254 || t.chars().any(char::is_control) => {
            Err(SubmitError::InvalidRequest(format!(
                "{name}: at most 254 characters, no control characters"
            )))
        }
        Some("") | None => Ok(None),
        Some(t) => Ok(Some(t.to_string())),
    };
    let recipient = text("recipient", &q.recipient)?;
    let category = text("category", &q.category)?;
    let filter = messages::MessageFilter {
        status: q.status.as_deref(),
        since: q.since,
        until: q.until,
        recipient: recipient.as_deref(),
        category: category.as_deref(),
    };
    let rows = state
        .store
        .with(|c| messages::list_for(c, &member.did, &filter, q.cursor.as_deref(), PAGE))
        .map_err(SubmitError::from)?;
    let cursor = (rows.len() as u32 == PAGE)
        .then(|| rows.last().map(|m| m.id.clone()))
        .flatten();
    let messages = rows
        .into_iter()
        .map(|m| status_of(&state, m))
        .collect::<Result<_, _>>()?;
    Ok(Json(MessagePage { messages, cursor }))
}
