//! The labeler's HTTP surface: the DID document, the label XRPC methods and report intake.
//! Errors use the XRPC shape `{"error": Name, "message": text}`.

pub mod query;
pub mod report;
pub mod subscribe;

use crate::Labeler;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;

/// An XRPC error response.
#[derive(Debug)]
pub struct XrpcError {
    pub status: StatusCode,
    pub error: &'static str,
    pub message: String,
}

impl XrpcError {
    /// 400 `InvalidRequest`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: "InvalidRequest",
            message: message.into(),
        }
    }

    /// 500 `InternalServerError`; the detail goes to the log, not the client.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "labeler request failed");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "InternalServerError",
            message: "internal error".into(),
        }
    }
}

impl IntoResponse for XrpcError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.error, "message": self.message })),
        )
            .into_response()
    }
}

/// Public routes: `/.well-known/did.json` and `/xrpc/com.atproto.label.*`, moderation intake.
pub fn router(labeler: Arc<Labeler>) -> axum::Router {
    axum::Router::new()
        .route("/.well-known/did.json", get(did_json))
        .route(
            "/xrpc/com.atproto.label.queryLabels",
            get(query::query_labels),
        )
        .route(
            "/xrpc/com.atproto.label.subscribeLabels",
            get(subscribe::subscribe_labels),
        )
        .route(
            "/xrpc/com.atproto.moderation.createReport",
            post(report::create_report),
        )
        .with_state(labeler)
}

/// The DID document, served only for a did:web identity (a did:plc one lives in the directory).
#[utoipa::path(get, path = "/.well-known/did.json", tag = "labeler",
    responses((status = 200, description = "did:web document", body = Object), (status = 404, description = "NotFound", body = Object)))]
pub(crate) async fn did_json(
    axum::extract::State(labeler): axum::extract::State<Arc<Labeler>>,
) -> Result<Json<serde_json::Value>, XrpcError> {
    if !labeler.did().starts_with("did:web:") {
        return Err(XrpcError {
            status: StatusCode::NOT_FOUND,
            error: "NotFound",
            message: "this labeler's DID is not a did:web".into(),
        });
    }
    Ok(Json(labeler.did_document()))
}
