//! `POST /v1/send` (SPEC §4.2): JSON in, an RFC 5322 message built with mail-builder, then the
//! same acceptance path as SMTP. 200 only after the message is durable.

use super::AppState;
use super::credentials;
use super::error::ApiError;
use crate::accept::{Source, Submission, SubmitError, domain_of};
use crate::store::idempotency::{self, Stored};
use crate::store::now_ms;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use mail_builder::MessageBuilder;
use mail_builder::headers::raw::Raw;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;

const IDEMPOTENCY_TTL_MS: i64 = 24 * 3600 * 1000;
const MAX_IDEMPOTENCY_KEY: usize = 256;

/// One address or several.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The request body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SendRequest {
    pub from: String,
    pub to: OneOrMany,
    #[serde(default)]
    pub cc: Option<OneOrMany>,
    #[serde(default)]
    pub bcc: Option<OneOrMany>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub html: Option<String>,
    #[serde(default)]
    pub reply_to: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub category: Option<String>,
}

/// An accepted recipient.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    pub recipient: String,
    pub message_id: String,
}

/// A refused recipient.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Rejected {
    pub recipient: String,
    pub code: String,
    pub reason: String,
}

/// The 200 answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SendResponse {
    pub accepted: Vec<Accepted>,
    pub rejected: Vec<Rejected>,
}

fn invalid(text: impl Into<String>) -> ApiError {
    SubmitError::InvalidRequest(text.into()).into()
}

/// A bare `local@domain` address without spaces or brackets.
fn bare_address(field: &str, a: &str) -> Result<String, ApiError> {
    let a = a.trim();
    let ok = domain_of(a).is_some()
        && a.len() <= 254
        && !a
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>(),;\"".contains(c));
    if ok {
        Ok(a.to_string())
    } else {
        Err(invalid(format!(
            "{field}: {a:?} is not a bare email address"
        )))
    }
}

/// Header names a member may not set through `headers`.
fn reserved(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "from"
            | "to"
            | "cc"
            | "bcc"
            | "subject"
            | "reply-to"
            | "date"
            | "message-id"
            | "mime-version"
            | "content-type"
            | "content-transfer-encoding"
            | "feedback-id"
            | "list-unsubscribe"
            | "list-unsubscribe-post"
    ) || n.starts_with("dkim-")
        || n.starts_with("x-atmos-")
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 76 && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

/// Handles `POST /v1/send`.
#[utoipa::path(
    post, path = "/v1/send", tag = "send",
    request_body = SendRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for 24 h")),
    security(("member" = [])),
    responses(
        (status = 200, description = "Durably queued", body = SendResponse),
        (status = 400, description = "AUTH_REQUIRED, INVALID_DID or INVALID_REQUEST", body = super::error::ErrorBody),
        (status = 401, description = "AUTH_FAILED", body = super::error::ErrorBody),
        (status = 403, description = "MEMBER_PENDING, MEMBER_SUSPENDED or DOMAIN_MISMATCH", body = super::error::ErrorBody),
        (status = 409, description = "IDEMPOTENCY_CONFLICT", body = super::error::ErrorBody),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = super::error::ErrorBody),
        (status = 429, description = "RATE_LIMITED (with Retry-After)", body = super::error::ErrorBody),
        (status = 500, description = "INTERNAL", body = super::error::ErrorBody),
        (status = 503, description = "QUEUE_FULL (with Retry-After)", body = super::error::ErrorBody),
    )
)]
pub async fn send(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match send_inner(&state, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn send_inner(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::Submit(SubmitError::TooBig)
        } else {
            invalid(format!("cannot read the request body: {e}"))
        }
    })?;
    let member = credentials::member(state, headers).await?;
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let k = v
                .to_str()
                .map_err(|_| invalid("Idempotency-Key must be visible ASCII"))?
                .trim()
                .to_string();
            if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY {
                return Err(invalid("Idempotency-Key must be 1 to 256 characters"));
            }
            Some(k)
        }
    };
    let digest: Vec<u8> = Sha256::digest(&body).to_vec();
    if let Some(key) = &idempotency_key {
        let since = now_ms() - IDEMPOTENCY_TTL_MS;
        let stored = state
            .store
            .with(|c| idempotency::get(c, &member.did, key, since))
            .map_err(SubmitError::from)?;
        if let Some(s) = stored {
            if s.body_sha256 != digest {
                return Err(ApiError::IdempotencyConflict);
            }
            let status = StatusCode::from_u16(s.status).unwrap_or(StatusCode::OK);
            let json: serde_json::Value = serde_json::from_str(&s.response).unwrap_or_default();
            return Ok((status, axum::Json(json)).into_response());
        }
    }
    let req: SendRequest =
        serde_json::from_slice(&body).map_err(|e| invalid(format!("invalid JSON body: {e}")))?;
    let (raw, from, recipients) = build_message(&req, state.max_recipients)?;
    let sub = Submission {
        did: member.did.clone(),
        mail_from: from.clone(),
        recipients: recipients.clone(),
        raw,
        source: Source::Http,
    };
    state.acceptor.check_sender(&member.did, &from)?;
    let outcome = state.acceptor.accept(sub).await?;
    let rejected: Vec<Rejected> = outcome
        .suppressed
        .iter()
        .map(|(recipient, reason)| Rejected {
            recipient: recipient.clone(),
            code: "SUPPRESSED".into(),
            reason: format!("{} ({reason})", crate::suppression::SUPPRESSED_TEXT),
        })
        .collect();
    let accepted = match &outcome.id {
        Some(id) => recipients
            .into_iter()
            .filter(|r| !outcome.suppressed.iter().any(|(s, _)| s == r))
            .map(|recipient| Accepted {
                recipient,
                message_id: id.clone(),
            })
            .collect(),
        None => Vec::new(),
    };
    let response = SendResponse { accepted, rejected };
    let json = serde_json::to_value(&response).unwrap_or_default();
    if let Some(key) = idempotency_key {
        let stored = Stored {
            body_sha256: digest,
            status: 200,
            response: json.to_string(),
        };
        let now = now_ms();
        if let Err(e) = state.store.write(|tx| {
            idempotency::put(
                tx,
                &member.did,
                &key,
                &stored,
                now,
                now - IDEMPOTENCY_TTL_MS,
            )
        }) {
            tracing::warn!(error = %e, "http: cannot remember idempotency key");
        }
    }
    Ok((StatusCode::OK, axum::Json(json)).into_response())
}

/// Validates the request and builds the message: (raw message, envelope sender, recipients).
fn build_message(
    req: &SendRequest,
    max_recipients: usize,
) -> Result<(Vec<u8>, String, Vec<String>), ApiError> {
    let from = bare_address("from", &req.from)?;
    let to = list("to", &req.to)?;
    let cc = req
        .cc
        .as_ref()
        .map(|c| list("cc", c))
        .transpose()?
        .unwrap_or_default();
    let bcc = req
        .bcc
        .as_ref()
        .map(|c| list("bcc", c))
        .transpose()?
        .unwrap_or_default();
    if to.is_empty() {
        return Err(invalid("to: at least one recipient is required"));
    }
    let mut recipients: Vec<String> = Vec::new();
    for r in to.iter().chain(&cc).chain(&bcc) {
        if !recipients.iter().any(|x| x.eq_ignore_ascii_case(r)) {
            recipients.push(r.clone());
        }
    }
    if recipients.len() > max_recipients {
        return Err(invalid(format!(
            "to/cc/bcc: at most {max_recipients} recipients"
        )));
    }
    if req.text.as_deref().unwrap_or("").is_empty() && req.html.as_deref().unwrap_or("").is_empty()
    {
        return Err(invalid("text or html: one of them is required"));
    }
    let subject = req.subject.clone().unwrap_or_default();
    if subject.contains(['\r', '\n']) {
        return Err(invalid("subject: must be one line"));
    }
    let mut b = MessageBuilder::new()
        .from(from.as_str())
        .to(to.iter().map(String::as_str).collect::<Vec<_>>())
        .subject(subject);
    if !cc.is_empty() {
        b = b.cc(cc.iter().map(String::as_str).collect::<Vec<_>>());
    }
    if let Some(r) = &req.reply_to {
        b = b.reply_to(bare_address("replyTo", r)?);
    }
    for (name, value) in &req.headers {
        if !valid_header_name(name) {
            return Err(invalid(format!(
                "headers: {name:?} is not a valid header name"
            )));
        }
        if reserved(name) {
            return Err(invalid(format!("headers: {name} is reserved")));
        }
        if value.contains(['\r', '\n']) {
            return Err(invalid(format!("headers: {name} must be one line")));
        }
        b = b.header(name.clone(), Raw::new(value.clone()));
    }
    if let Some(c) = &req.category {
        if c.len() > 64 || c.contains(['\r', '\n']) {
            return Err(invalid("category: at most 64 characters, one line"));
        }
        b = b.header("X-Atmos-Category", Raw::new(c.clone()));
    }
    if let Some(t) = &req.text {
        b = b.text_body(t.clone());
    }
    if let Some(h) = &req.html {
        b = b.html_body(h.clone());
    }
    let raw = b.write_to_vec().map_err(|e| {
        ApiError::Submit(SubmitError::InvalidRequest(format!(
            "cannot build the message: {e}"
        )))
    })?;
    Ok((raw, from, recipients))
}

fn list(field: &str, v: &OneOrMany) -> Result<Vec<String>, ApiError> {
    let items = match v {
        OneOrMany::One(s) => vec![s.clone()],
        OneOrMany::Many(v) => v.clone(),
    };
    items.iter().map(|a| bare_address(field, a)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: serde_json::Value) -> SendRequest {
        serde_json::from_value(json).expect("request")
    }

    #[test]
    fn builds_a_message_and_validates_fields() {
        let r = req(serde_json::json!({
            "from": "app@member.test", "to": ["a@x.test", "b@x.test"], "cc": "c@x.test", "bcc": ["d@x.test", "A@x.test"],
            "subject": "Hi", "text": "plain", "html": "<p>html</p>", "replyTo": "help@member.test",
            "headers": {"X-Campaign": "7"}, "category": "password-reset"
        }));
        let (raw, from, rcpts) = build_message(&r, 10).unwrap();
        assert_eq!(from, "app@member.test");
        assert_eq!(
            rcpts,
            ["a@x.test", "b@x.test", "c@x.test", "d@x.test"],
            "deduplicated, bcc kept out of headers"
        );
        let text = String::from_utf8(raw).unwrap();
        assert!(
            text.contains("X-Campaign: 7") && text.contains("X-Atmos-Category: password-reset")
        );
        assert!(!text.contains("d@x.test"), "bcc must not appear in headers");
        assert!(text.contains("multipart/alternative"));
        let code = |j: serde_json::Value| match build_message(&req(j), 3) {
            Err(ApiError::Submit(SubmitError::InvalidRequest(m))) => m,
            other => panic!("expected INVALID_REQUEST, got {other:?}"),
        };
        assert!(
            code(serde_json::json!({"from": "bad", "to": "a@x.test", "text": "t"}))
                .starts_with("from")
        );
        assert!(
            code(serde_json::json!({"from": "a@m.test", "to": [], "text": "t"})).starts_with("to")
        );
        assert!(
            code(serde_json::json!({"from": "a@m.test", "to": "a@x.test"}))
                .starts_with("text or html")
        );
        assert!(code(serde_json::json!({"from": "a@m.test", "to": "a@x.test", "text": "t", "headers": {"DKIM-Signature": "x"}})).contains("reserved"));
        assert!(code(serde_json::json!({"from": "a@m.test", "to": ["a@x.test","b@x.test","c@x.test","d@x.test"], "text": "t"})).contains("at most 3"));
        assert!(code(serde_json::json!({"from": "a@m.test", "to": "a@x.test", "text": "t", "subject": "a\r\nBcc: x"})).starts_with("subject"));
    }
}
