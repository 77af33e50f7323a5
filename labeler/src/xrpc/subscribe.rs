//! `com.atproto.label.subscribeLabels`: a WebSocket of DAG-CBOR frames (header then body in one
//! binary message). With a cursor the stored labels after it are replayed in pages, then live
//! ones follow; a cursor past the newest `seq` gets a `FutureCursor` error and the socket closes.

use crate::Labeler;
use crate::store::StoredLabel;
use axum::extract::ws::{Message, WebSocket};
use axum::extract::{Query, State, WebSocketUpgrade};
use axum::response::Response;
use futures_util::SinkExt;
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

/// Labels per replay page (each page is one short read of the store; the connection is never
/// held while frames are sent).
const PAGE: u32 = 500;
/// Largest frame a subscriber may send us: the protocol has nothing for them to say.
const MAX_INCOMING: usize = 1024;

/// `subscribeLabels` query parameters.
#[derive(serde::Deserialize)]
pub struct Params {
    /// Replay from after this sequence number.
    pub cursor: Option<i64>,
}

/// Frame header; fields in DAG-CBOR key order (`t` before `op`).
#[derive(Serialize)]
struct Header<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    t: Option<&'a str>,
    op: i8,
}

#[derive(Serialize)]
struct LabelsBody<'a> {
    seq: i64,
    labels: [&'a crate::label::Label; 1],
}

#[derive(Serialize)]
struct InfoBody<'a> {
    name: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

fn frame(header: &Header<'_>, body: &impl Serialize) -> Option<Vec<u8>> {
    let mut out = serde_ipld_dagcbor::to_vec(header).ok()?;
    out.extend(serde_ipld_dagcbor::to_vec(body).ok()?);
    Some(out)
}

/// The `#labels` frame of one stored label.
pub fn labels_frame(l: &StoredLabel) -> Option<Vec<u8>> {
    frame(
        &Header {
            t: Some("#labels"),
            op: 1,
        },
        &LabelsBody {
            seq: l.seq,
            labels: [&l.label],
        },
    )
}

/// `GET /xrpc/com.atproto.label.subscribeLabels` (WebSocket upgrade).
pub async fn subscribe_labels(
    State(labeler): State<Arc<Labeler>>,
    params: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
    ws: WebSocketUpgrade,
) -> Response {
    let Ok(Query(params)) = params else {
        return axum::response::IntoResponse::into_response(super::XrpcError::invalid(
            "cursor must be an integer",
        ));
    };
    let Ok(permit) = labeler.subscribers.clone().try_acquire_owned() else {
        return axum::response::IntoResponse::into_response(super::XrpcError {
            status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
            error: "TooManySubscribers",
            message: "the labeler has as many subscribers as it serves; try again later".into(),
        });
    };
    ws.max_frame_size(MAX_INCOMING)
        .max_message_size(MAX_INCOMING)
        .on_upgrade(move |socket| async move {
            if let Err(e) = stream(labeler, socket, params.cursor).await {
                tracing::debug!(error = %e, "label subscriber left");
            }
            drop(permit);
        })
}

async fn send(socket: &mut WebSocket, bytes: Vec<u8>) -> Result<(), axum::Error> {
    socket.send(Message::Binary(bytes.into())).await
}

async fn stream(
    labeler: Arc<Labeler>,
    mut socket: WebSocket,
    cursor: Option<i64>,
) -> Result<(), axum::Error> {
    // Subscribe before reading the backlog so nothing published in between is missed; labels
    // already sent from the store are skipped by `seq`.
    let mut live = labeler.subscribe();
    let max = labeler.store.max_seq().unwrap_or(0);
    let mut last = match cursor {
        None => max,
        Some(c) if c > max => {
            if let Some(f) = frame(
                &Header { t: None, op: -1 },
                &ErrorBody {
                    error: "FutureCursor",
                    message: "cursor is ahead of the newest label",
                },
            ) {
                send(&mut socket, f).await?;
            }
            return socket.close().await;
        }
        Some(c) => {
            if c < 0 {
                // Everything is kept, so only a nonsensical cursor is "outdated": replay it all.
                if let Some(f) = frame(
                    &Header {
                        t: Some("#info"),
                        op: 1,
                    },
                    &InfoBody {
                        name: "OutdatedCursor",
                        message: "cursor is older than the retained history; replaying from the start",
                    },
                ) {
                    send(&mut socket, f).await?;
                }
            }
            c.max(0)
        }
    };
    if cursor.is_some() {
        last = replay(&labeler, &mut socket, last).await?;
    }
    loop {
        tokio::select! {
            _ = labeler.closing.cancelled() => return socket.close().await,
            got = live.recv() => match got {
                Ok(l) => {
                    if l.seq <= last {
                        continue;
                    }
                    if let Some(f) = labels_frame(&l) {
                        send(&mut socket, f).await?;
                    }
                    last = l.seq;
                }
                // Fell behind the live buffer: catch up from the store.
                Err(RecvError::Lagged(_)) => last = replay(&labeler, &mut socket, last).await?,
                Err(RecvError::Closed) => return socket.close().await,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Err(e)) => return Err(e),
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Sends every stored label after `last`; returns the new `last`.
async fn replay(
    labeler: &Labeler,
    socket: &mut WebSocket,
    mut last: i64,
) -> Result<i64, axum::Error> {
    loop {
        let page = match labeler.store.since(last, PAGE) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "label replay failed");
                return Err(axum::Error::new(e));
            }
        };
        let n = page.len();
        for l in &page {
            if let Some(f) = labels_frame(l) {
                send(socket, f).await?;
            }
            last = l.seq;
        }
        if n < PAGE as usize {
            return Ok(last);
        }
    }
}
