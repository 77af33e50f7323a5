//! A thin Jetstream v1 consumer for `email.atmos.attestation` creates, updates and deletes.
//! jetstream-oxide is not used: it decodes records only into atrium's closed set of known
//! collections (ours is not one) and pins an older atrium-api. The protocol is small: a
//! WebSocket of JSON events (zstd frames with Jetstream's dictionary when compression is on),
//! resumed with `cursor=<time_us>`, which is persisted here.

use crate::{Labeler, now};
use atmos_lexicons::{ATTESTATION_NSID, Attestation};
use futures_util::StreamExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Cursor name in the labeler store.
pub const CURSOR: &str = "jetstream";
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Largest decompressed event accepted.
const MAX_EVENT: usize = 4 * 1024 * 1024;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct JetstreamSettings {
    /// `wss://host/subscribe` (or `ws://` in tests).
    pub url: String,
    /// Ask for zstd-compressed frames; needs Jetstream's dictionary.
    pub compress: bool,
    pub zstd_dictionary: Option<PathBuf>,
}

/// Why an event was skipped.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("zstd: {0}")]
    Zstd(std::io::Error),
    #[error("invalid attestation: {0}")]
    Record(String),
    #[error(transparent)]
    Labeler(#[from] crate::LabelerError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

#[derive(serde::Deserialize)]
struct Event {
    /// atrium's DID type rejects a malformed DID at parse time.
    did: atmos_lexicons::Did,
    time_us: i64,
    kind: String,
    commit: Option<Commit>,
}

#[derive(serde::Deserialize)]
struct Commit {
    operation: String,
    collection: String,
    rkey: String,
    record: Option<serde_json::Value>,
}

/// The subscribe URL for a cursor.
pub fn subscribe_url(s: &JetstreamSettings, cursor: Option<i64>) -> String {
    let sep = if s.url.contains('?') { '&' } else { '?' };
    let mut url = format!("{}{sep}wantedCollections={ATTESTATION_NSID}", s.url);
    if let Some(c) = cursor {
        url.push_str(&format!("&cursor={c}"));
    }
    if s.compress {
        url.push_str("&compress=true");
    }
    url
}

/// Decompresses one zstd frame with the optional dictionary.
pub fn decompress(frame: &[u8], dictionary: &[u8]) -> Result<Vec<u8>, EventError> {
    let mut d = zstd::bulk::Decompressor::with_dictionary(dictionary).map_err(EventError::Zstd)?;
    d.decompress(frame, MAX_EVENT).map_err(EventError::Zstd)
}

/// What one event was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub time_us: i64,
    /// It created, updated or deleted an attestation.
    pub attestation: bool,
}

/// Applies one event.
pub fn apply(labeler: &Labeler, bytes: &[u8]) -> Result<Applied, EventError> {
    let e: Event = serde_json::from_slice(bytes)?;
    let skipped = Applied {
        time_us: e.time_us,
        attestation: false,
    };
    let Some(c) = e
        .commit
        .filter(|c| e.kind == "commit" && c.collection == ATTESTATION_NSID)
    else {
        return Ok(skipped);
    };
    let did = e.did.as_str();
    match c.operation.as_str() {
        "create" | "update" => {
            let record = c
                .record
                .ok_or_else(|| EventError::Record("no record".into()))?;
            let a: Attestation = serde_json::from_value(record)
                .map_err(|err| EventError::Record(err.to_string()))?;
            a.validate(&c.rkey)
                .map_err(|err| EventError::Record(err.to_string()))?;
            labeler.attested(did, &c.rkey, &a)?;
            tracing::info!(did, domain = %a.domain, "attestation received");
        }
        "delete" => {
            labeler.withdrawn(did, &c.rkey)?;
            tracing::info!(did, rkey = %c.rkey, "attestation deleted");
        }
        _ => return Ok(skipped),
    }
    Ok(Applied {
        attestation: true,
        ..skipped
    })
}

/// Consumes Jetstream until `shutdown`, reconnecting with backoff.
pub async fn run(labeler: Arc<Labeler>, settings: JetstreamSettings, shutdown: CancellationToken) {
    let dictionary = match (&settings.compress, &settings.zstd_dictionary) {
        (true, Some(path)) => match std::fs::read(path) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "jetstream: cannot read the zstd dictionary; consumer off");
                return;
            }
        },
        _ => Vec::new(),
    };
    let mut backoff = Duration::from_secs(1);
    loop {
        let cursor = labeler.store.cursor(CURSOR).ok().flatten();
        let url = subscribe_url(&settings, cursor);
        tracing::info!(%url, "jetstream: connecting");
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = tokio_tungstenite::connect_async(url.as_str()) => c,
        };
        match connected {
            Ok((mut ws, _)) => {
                let mut saved_at = now();
                loop {
                    let msg = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        m = ws.next() => m,
                    };
                    let bytes = match msg {
                        Some(Ok(Message::Text(t))) => t.as_bytes().to_vec(),
                        Some(Ok(Message::Binary(b))) => match decompress(&b, &dictionary) {
                            Ok(d) => d,
                            Err(e) => {
                                tracing::warn!(error = %e, "jetstream: undecodable frame");
                                continue;
                            }
                        },
                        Some(Ok(Message::Close(_))) | None => break,
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "jetstream: connection failed");
                            break;
                        }
                    };
                    backoff = Duration::from_secs(1);
                    match apply(&labeler, &bytes) {
                        Ok(applied) => {
                            // Persisted at most once a second, and always after an attestation
                            // (those are rare; other events may be many).
                            if applied.attestation || now() - saved_at >= 1000 {
                                if let Err(e) = labeler.store.set_cursor(CURSOR, applied.time_us) {
                                    tracing::warn!(error = %e, "jetstream: cursor not saved");
                                }
                                saved_at = now();
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "jetstream: event skipped"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "jetstream: cannot connect"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_carries_collection_cursor_and_compression() {
        let s = JetstreamSettings {
            url: "ws://127.0.0.1:1/subscribe".into(),
            compress: true,
            zstd_dictionary: None,
        };
        assert_eq!(
            subscribe_url(&s, Some(42)),
            "ws://127.0.0.1:1/subscribe?wantedCollections=email.atmos.attestation&cursor=42&compress=true"
        );
    }

    #[test]
    fn commits_create_and_delete_attestations_and_bad_ones_are_skipped() {
        let l = crate::testing::labeler();
        let did = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
        let record = serde_json::json!({"$type": ATTESTATION_NSID, "domain": "d.test",
            "dkimSelectors": ["s1"], "relayMember": true, "createdAt": "2026-11-23T10:00:00.000Z"});
        let event = |t: i64, op: &str, rkey: &str, rec: Option<&serde_json::Value>| {
            let mut c = serde_json::json!({"rev": "r", "operation": op, "collection": ATTESTATION_NSID, "rkey": rkey});
            if let Some(r) = rec {
                c["record"] = r.clone();
            }
            serde_json::json!({"did": did, "time_us": t, "kind": "commit", "commit": c}).to_string()
        };
        assert_eq!(
            apply(&l, event(1, "create", "d.test", Some(&record)).as_bytes()).expect("applies"),
            Applied {
                time_us: 1,
                attestation: true
            }
        );
        let live = l.store.attestations(did).expect("db").expect("published");
        assert_eq!(live[0].dkim_selectors, ["s1"]);
        assert!(matches!(
            apply(
                &l,
                event(2, "create", "other.test", Some(&record)).as_bytes()
            ),
            Err(EventError::Record(_))
        ));
        assert!(apply(&l, br#"{"did":"not-a-did","time_us":3,"kind":"commit"}"#).is_err());
        assert_eq!(
            apply(&l, br#"{"did":"did:plc:x","time_us":4,"kind":"identity"}"#).expect("skipped"),
            Applied {
                time_us: 4,
                attestation: false
            }
        );
        apply(&l, event(5, "delete", "d.test", None).as_bytes()).expect("applies");
        assert_eq!(l.store.attestations(did).expect("db"), Some(vec![]));
        assert_eq!(
            l.store.due(i64::MAX, 10).expect("db")[0].0,
            did,
            "a check was scheduled"
        );
    }

    #[test]
    fn zstd_frames_with_a_dictionary_decode() {
        let dict = b"{\"did\":\"did:plc:\",\"time_us\":,\"kind\":\"commit\",\"commit\":{\"operation\":\"create\"".repeat(4);
        let event = br#"{"did":"did:plc:x","time_us":7,"kind":"identity"}"#;
        let mut c = zstd::bulk::Compressor::with_dictionary(3, &dict).expect("compressor");
        let frame = c.compress(event).expect("compresses");
        assert_eq!(decompress(&frame, &dict).expect("decodes"), event);
        assert!(decompress(b"not zstd", &dict).is_err());
    }
}
