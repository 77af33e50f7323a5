//! `POST /v1/send` (BEHAVIOUR §4.2): JSON in, an RFC 5322 message built with mail-builder, then the
//! same acceptance path as SMTP. 200 only after the message is durable.

use super::AppState;
use super::credentials;
use super::error::ApiError;
use crate::accept::{Source, Submission, SubmitError};
use crate::address::{Mailbox, NamedMailbox};
use crate::headers::{Trace, message_id};
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
use std::net::IpAddr;
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

/// One mailbox field (`to`, `cc`, `bcc`).
fn mailbox(field: &str, a: &str) -> Result<Mailbox, ApiError> {
    Mailbox::parse(a.trim())
        .map_err(|e| invalid(format!("{field}: {a:?} is not a valid address: it {e}")))
}

/// A mailbox with an optional display name (`from`, `replyTo`).
fn named(field: &str, a: &str) -> Result<NamedMailbox, ApiError> {
    NamedMailbox::parse(a)
        .map_err(|e| invalid(format!("{field}: {a:?} is not a valid address: it {e}")))
}

/// Header names a member may not set through `headers`: the ones the body fields set, the
/// relay's own, and trace and authentication fields only an MTA may write.
fn reserved(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "from"
            | "sender"
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
            | "received"
            | "return-path"
            | "authentication-results"
            | "feedback-id"
    ) || n.starts_with("dkim-")
        || n.starts_with("arc-")
        || n.starts_with("resent-")
        || n.starts_with("list-unsubscribe")
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
    super::Peer(peer): super::Peer,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match send_inner(&state, peer, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn send_inner(
    state: &AppState,
    peer: IpAddr,
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
    let member = credentials::member(state, headers, peer).await?;
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
    let Some(key) = idempotency_key else {
        return send_once(state, &member, peer, &body, None).await;
    };
    // Lookup and send are one step: concurrent requests with one key wait here, then replay.
    let gate = state.idempotency_gate(&member.did, &key);
    let turn = gate.lock().await;
    let digest: Vec<u8> = Sha256::digest(&body).to_vec();
    let since = now_ms() - IDEMPOTENCY_TTL_MS;
    let stored = state
        .store
        .with(|c| idempotency::get(c, &member.did, &key, since))
        .map_err(SubmitError::from)?;
    let answer = match stored {
        Some(s) if s.body_sha256 != digest => Err(ApiError::IdempotencyConflict),
        Some(s) => {
            let status = StatusCode::from_u16(s.status).unwrap_or(StatusCode::OK);
            let json: serde_json::Value = serde_json::from_str(&s.response).unwrap_or_default();
            Ok((status, axum::Json(json)).into_response())
        }
        None => send_once(state, &member, peer, &body, Some((key.clone(), digest))).await,
    };
    drop(turn);
    state.idempotency_done(&member.did, &key, gate);
    answer
}

/// The 200 body for what acceptance queued.
fn response_of(accepted: &crate::accept::Accepted) -> SendResponse {
    SendResponse {
        accepted: accepted
            .queued
            .iter()
            .map(|(recipient, id)| Accepted {
                recipient: recipient.to_string(),
                message_id: id.clone(),
            })
            .collect(),
        rejected: accepted
            .suppressed
            .iter()
            .map(|(recipient, reason)| Rejected {
                recipient: recipient.to_string(),
                code: "SUPPRESSED".into(),
                reason: format!("{} ({reason})", crate::suppression::SUPPRESSED_TEXT),
            })
            .collect(),
    }
}

/// Builds and accepts one message; with an idempotency key, its answer is stored in the same
/// transaction as the message.
async fn send_once(
    state: &AppState,
    member: &crate::store::members::Member,
    peer: IpAddr,
    body: &[u8],
    idempotency: Option<(String, Vec<u8>)>,
) -> Result<Response, ApiError> {
    let did = member.did.as_str();
    let id = crate::accept::new_id();
    let hostname = &state.acceptor.settings().hostname;
    let built = parse_request(body, state.max_recipients, &message_id(&id, hostname))?;
    state.acceptor.check_sender(did, &built.from)?;
    let also: Option<crate::accept::AlsoWrite> = idempotency.map(|(key, digest)| {
        let did = did.to_string();
        Box::new(
            move |tx: &rusqlite::Connection, a: &crate::accept::Accepted| {
                let json = serde_json::to_value(response_of(a)).unwrap_or_default();
                let now = now_ms();
                idempotency::put(
                    tx,
                    &did,
                    &key,
                    &Stored {
                        body_sha256: digest,
                        status: 200,
                        response: json.to_string(),
                    },
                    now,
                    now - IDEMPOTENCY_TTL_MS,
                )
            },
        ) as crate::accept::AlsoWrite
    });
    let outcome = state
        .acceptor
        .accept(Submission {
            did: did.to_string(),
            mail_from: built.from,
            recipients: built.recipients,
            raw: built.raw,
            source: Source::Http,
            trace: Trace {
                protocol: "HTTP",
                helo: None,
                client: Some(peer),
            },
            id: Some(id),
            also,
            credential: Some(member.key_fingerprint()),
        })
        .await?;
    let json = serde_json::to_value(response_of(&outcome)).unwrap_or_default();
    Ok((StatusCode::OK, axum::Json(json)).into_response())
}

/// A request turned into a message.
#[derive(Debug)]
pub struct Built {
    /// The message as it will be stamped and signed.
    pub raw: Vec<u8>,
    /// Envelope sender (the From mailbox).
    pub from: Mailbox,
    pub recipients: Vec<Mailbox>,
}

/// Reads a `/v1/send` body into the message it asks for: every check made before the member and
/// the queue are involved (the HTTP fuzz target's entry point).
pub fn parse_request(
    body: &[u8],
    max_recipients: usize,
    message_id: &str,
) -> Result<Built, ApiError> {
    let req: SendRequest =
        serde_json::from_slice(body).map_err(|e| invalid(format!("invalid JSON body: {e}")))?;
    build_message(&req, max_recipients, message_id)
}

/// Parses every field into its type and builds the message, with `message_id` as its
/// Message-ID (the relay's one rule, so it matches the id the API returns).
fn build_message(
    req: &SendRequest,
    max_recipients: usize,
    message_id: &str,
) -> Result<Built, ApiError> {
    let from = named("from", &req.from)?;
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
    let mut recipients: Vec<Mailbox> = Vec::new();
    for r in to.iter().chain(&cc).chain(&bcc) {
        if !recipients.iter().any(|x| x.same_as(r)) {
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
    if subject.chars().any(|c| c.is_control()) {
        return Err(invalid(
            "subject: must be one line without control characters",
        ));
    }
    let address = |m: &NamedMailbox| -> mail_builder::headers::address::Address<'static> {
        match &m.name {
            Some(n) => (n.clone(), m.mailbox.to_string()).into(),
            None => m.mailbox.to_string().into(),
        }
    };
    let mut b = MessageBuilder::new()
        .from(address(&from))
        .to(to.iter().map(|m| m.to_string()).collect::<Vec<_>>())
        .subject(subject)
        .message_id(message_id.to_string());
    if !cc.is_empty() {
        b = b.cc(cc.iter().map(|m| m.to_string()).collect::<Vec<_>>());
    }
    if let Some(r) = &req.reply_to {
        b = b.reply_to(address(&named("replyTo", r)?));
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
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(invalid(format!(
                "headers: {name} must be one line without control characters"
            )));
        }
        b = b.header(name.clone(), Raw::new(value.clone()));
    }
    if let Some(c) = &req.category {
        if c.len() > 64 || c.chars().any(|c| c.is_control()) {
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
    Ok(Built {
        raw,
        from: from.mailbox,
        recipients,
    })
}

fn list(field: &str, v: &OneOrMany) -> Result<Vec<Mailbox>, ApiError> {
    let items = match v {
        OneOrMany::One(s) => vec![s.clone()],
        OneOrMany::Many(v) => v.clone(),
    };
    items.iter().map(|a| mailbox(field, a)).collect()
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
        let built = build_message(&r, 10, "m1@relay.test").unwrap();
        assert_eq!(built.from.as_str(), "app@member.test");
        let rcpts: Vec<&str> = built.recipients.iter().map(|m| m.as_str()).collect();
        assert_eq!(
            rcpts,
            ["a@x.test", "b@x.test", "c@x.test", "d@x.test"],
            "deduplicated, bcc kept out of headers"
        );
        let text = String::from_utf8(built.raw).unwrap();
        assert!(text.contains("Message-ID: <m1@relay.test>"), "{text}");
        assert!(
            text.contains("X-Campaign: 7") && text.contains("X-Atmos-Category: password-reset")
        );
        assert!(!text.contains("d@x.test"), "bcc must not appear in headers");
        assert!(text.contains("multipart/alternative"));
        let code = |j: serde_json::Value| match build_message(&req(j), 3, "m@relay.test") {
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
        // Every address field is one strict type: CR, LF, NUL, '>' and over-long parts fail.
        let long = format!("{}@x.test", "l".repeat(65));
        for field in ["from", "to", "cc", "bcc", "replyTo"] {
            for bad in [
                "a@x.test\r\nRSET",
                "a@x.test\nX: y",
                "a\u{0}@x.test",
                "a@x.test>",
                long.as_str(),
            ] {
                let mut j = serde_json::json!({"from": "a@m.test", "to": "b@x.test", "text": "t"});
                j[field] = serde_json::json!(bad);
                assert!(code(j).starts_with(field), "{field} {bad:?}");
            }
        }
        for name in [
            "Sender",
            "Resent-From",
            "Received",
            "Return-Path",
            "Authentication-Results",
            "ARC-Seal",
            "DKIM-Signature",
            "List-Unsubscribe",
            "List-Unsubscribe-Post",
            "Feedback-ID",
        ] {
            let j = serde_json::json!({"from": "a@m.test", "to": "b@x.test", "text": "t", "headers": {name: "x"}});
            assert!(code(j).contains("reserved"), "{name}");
        }
        let j = serde_json::json!({"from": "a@m.test", "to": "b@x.test", "text": "t", "headers": {"X-Ok": "a\u{0}b"}});
        assert!(code(j).contains("control"));
        // A display name is taken; the address check stays on the mailbox.
        let built = build_message(
            &req(serde_json::json!({"from": "App <app@m.test>", "to": "b@x.test", "text": "t"})),
            3,
            "m@r.test",
        )
        .unwrap();
        assert_eq!(built.from.as_str(), "app@m.test");
        assert!(
            String::from_utf8(built.raw)
                .unwrap()
                .contains("From: \"App\" <app@m.test>")
        );
    }
}
