//! RFC 8058 one-click unsubscribe for the `List-Unsubscribe` URLs the relay stamps: `POST`
//! records the suppression (reason `unsubscribe`); `GET` shows a confirmation page and changes
//! nothing (link scanners follow GETs).

use super::AppState;
use crate::store::{now_ms, suppressions};
use crate::verp::{self, Unsubscribe};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use std::sync::Arc;

/// A genuine token for one recipient. Tokens for a whole message (`*`, from before links were
/// per recipient) are refused: one reader's click must never unsubscribe the others.
fn check(state: &AppState, token: &str) -> Result<Unsubscribe, Box<Response>> {
    verp::parse_unsubscribe_token(&state.secrets, token)
        .ok()
        .filter(|u| u.recipient != "*")
        .ok_or(())
        .map_err(|_| {
        Box::new(
            (StatusCode::BAD_REQUEST, Html("<!doctype html><title>Unsubscribe</title><p>This unsubscribe link is not valid.</p>".to_string()))
                .into_response(),
        )
    })
}

/// `GET /unsubscribe/{token}`: a page with a button that POSTs.
#[utoipa::path(get, path = "/unsubscribe/{token}", tag = "unsubscribe", params(("token" = String, Path)),
    responses((status = 200, description = "Confirmation page", content_type = "text/html", body = String),
              (status = 400, description = "Invalid link", content_type = "text/html", body = String)))]
pub async fn page(State(state): State<Arc<AppState>>, Path(token): Path<String>) -> Response {
    let u = match check(&state, &token) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let who = html_escape(&u.recipient);
    Html(format!(
        "<!doctype html><meta charset=utf-8><title>Unsubscribe</title>\
         <p>Stop receiving this sender's mail at {who}?</p>\
         <form method=post><input type=hidden name=List-Unsubscribe value=One-Click>\
         <button type=submit>Unsubscribe</button></form>"
    ))
    .into_response()
}

/// `POST /unsubscribe/{token}`: records the suppression for the sender's DID (RFC 8058).
#[utoipa::path(post, path = "/unsubscribe/{token}", tag = "unsubscribe", params(("token" = String, Path)),
    responses((status = 200, description = "Unsubscribed", content_type = "text/html", body = String),
              (status = 400, description = "Invalid link", content_type = "text/html", body = String),
              (status = 500, description = "Not recorded", content_type = "text/html", body = String)))]
pub async fn confirm(State(state): State<Arc<AppState>>, Path(token): Path<String>) -> Response {
    let u = match check(&state, &token) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let now = now_ms();
    let result = state.store.write(|tx| {
        suppressions::add(
            tx,
            &u.did,
            &u.recipient,
            "unsubscribe",
            Some(&u.message_id),
            now,
        )
    });
    match result {
        Ok(_) => Html(
            "<!doctype html><title>Unsubscribed</title><p>You are unsubscribed.</p>".to_string(),
        )
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "unsubscribe: cannot record");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
