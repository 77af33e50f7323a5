//! Atmosphere Mail labeler: signs atproto labels about member DIDs and publishes them over
//! `com.atproto.label.queryLabels` and `subscribeLabels`. It runs inside the `atmos` process;
//! the relay hands it a [`verification::Directory`] of members and their DKIM keys.

pub mod admin;
pub mod identity;
pub mod jetstream;
pub mod label;
pub mod service_auth;
pub mod service_record;
pub mod store;
pub mod txt;
pub mod verification;
pub mod xrpc;

use k256::ecdsa::{SigningKey, VerifyingKey};
use label::Label;
use std::sync::Arc;
use std::time::Duration;
use store::{Store, StoreError, StoredLabel};
use tokio::sync::{Notify, broadcast};

/// OpenAPI description of the labeler's HTTP endpoints (merged into the relay's document;
/// `subscribeLabels` is a WebSocket and is described by its lexicon instead).
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    xrpc::did_json,
    xrpc::query::query_labels,
    xrpc::report::create_report,
    admin::list,
    admin::emit,
    admin::reports,
    admin::settle,
    admin::verify,
))]
pub struct LabelerApiDoc;

/// How many live labels a slow subscriber may fall behind before it re-reads from the store.
const LIVE_BUFFER: usize = 4096;

/// Why the labeler failed.
#[derive(Debug, thiserror::Error)]
pub enum LabelerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Encode(#[from] label::EncodeError),
    #[error("signing key: {0}")]
    Key(String),
}

/// Seals private keys at rest (the relay's AES-256-GCM key-encryption key).
pub trait Sealer: Send + Sync {
    /// Encrypts `plain`.
    fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, String>;
    /// Decrypts what `seal` produced.
    fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, String>;
}

/// Labeler settings (the `[labeler]` config section, resolved).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The labeler DID: `did:web:<hostname>` by default, or a configured `did:plc`.
    pub did: String,
    /// Public base URL of this service (`#atproto_labeler` endpoint).
    pub endpoint: String,
    /// How often a verified subject is checked again.
    pub reverify_interval: Duration,
    /// First retry delay after a failed check; doubles up to `retry_max`.
    pub retry_base: Duration,
    /// Longest retry delay while a subject is waiting for its DNS records.
    pub retry_max: Duration,
    /// PLC directory for resolving `did:plc` issuers of service-auth tokens.
    pub plc_url: String,
    /// Concurrent `subscribeLabels` WebSockets.
    pub max_subscribers: usize,
    /// `createReport`s accepted per minute from everyone (issuers cost nothing to make).
    pub reports_per_minute: u32,
}

/// The labeler: identity, signing key, label log and live fan-out.
pub struct Labeler {
    pub settings: Settings,
    pub store: Store,
    key: SigningKey,
    key_id: i64,
    live: broadcast::Sender<Arc<StoredLabel>>,
    /// Wakes the verifier when a check is scheduled for now.
    pub(crate) wake: Notify,
    /// Cancelled when the process stops; ends label subscriptions.
    pub(crate) closing: tokio_util::sync::CancellationToken,
    /// Resolves the DIDs of service-auth issuers.
    pub(crate) resolver: service_auth::DidResolver,
    /// One permit per open `subscribeLabels` socket.
    pub(crate) subscribers: Arc<tokio::sync::Semaphore>,
}

impl Labeler {
    /// Forgets what strangers made the labeler remember (issuers' rate state, cached DID
    /// documents) once it no longer matters; the relay calls it on a timer.
    pub fn sweep(&self) {
        self.resolver.sweep();
    }
}

/// Current time in milliseconds since the epoch.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Labeler {
    /// Opens the labeler: uses `configured_key` (a did:plc deployment), else the stored key, else
    /// generates one on first start and stores it sealed.
    /// `documents` resolves service-auth issuers (`None`: over HTTP from `settings.plc_url`).
    pub fn open(
        store: Store,
        settings: Settings,
        sealer: &dyn Sealer,
        configured_key: Option<SigningKey>,
        documents: Option<Arc<dyn service_auth::DidDocuments>>,
    ) -> Result<Self, LabelerError> {
        let stored = match store.active_key()? {
            Some((id, sealed)) => {
                let raw = sealer.open(&sealed).map_err(LabelerError::Key)?;
                let key =
                    SigningKey::from_slice(&raw).map_err(|e| LabelerError::Key(e.to_string()))?;
                Some((id, key))
            }
            None => None,
        };
        let (key_id, key) = match (stored, configured_key) {
            (Some((id, old)), Some(new)) if old == new => (id, old),
            (_, Some(new)) => (Self::store_key(&store, sealer, &new)?, new),
            (Some((id, old)), None) => (id, old),
            (None, None) => {
                let key = SigningKey::random(&mut k256::elliptic_curve::rand_core::OsRng);
                tracing::info!("labeler signing key generated");
                (Self::store_key(&store, sealer, &key)?, key)
            }
        };
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        tracing::info!(did = %settings.did, key = %identity::multikey(key.verifying_key()), "labeler identity");
        Ok(Self {
            resolver: service_auth::DidResolver::new(
                documents.unwrap_or_else(|| {
                    Arc::new(service_auth::HttpDocuments::new(&settings.plc_url))
                }),
                settings.reports_per_minute,
            ),
            subscribers: Arc::new(tokio::sync::Semaphore::new(settings.max_subscribers)),
            settings,
            store,
            key,
            key_id,
            live,
            wake: Notify::new(),
            closing: tokio_util::sync::CancellationToken::new(),
        })
    }

    fn store_key(
        store: &Store,
        sealer: &dyn Sealer,
        key: &SigningKey,
    ) -> Result<i64, LabelerError> {
        let sealed = sealer.seal(&key.to_bytes()).map_err(LabelerError::Key)?;
        Ok(store.insert_key(&identity::multikey(key.verifying_key()), &sealed, now())?)
    }

    /// The labeler DID.
    pub fn did(&self) -> &str {
        &self.settings.did
    }

    /// The public half of the signing key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        self.key.verifying_key()
    }

    /// The DID document served at `/.well-known/did.json`.
    pub fn did_document(&self) -> serde_json::Value {
        identity::did_document(self.did(), self.verifying_key(), &self.settings.endpoint)
    }

    /// Signs, stores and broadcasts a label (or its negation) on `uri`.
    pub fn emit(
        &self,
        uri: &str,
        val: &str,
        neg: bool,
        reason: Option<&str>,
        actor: &str,
    ) -> Result<StoredLabel, LabelerError> {
        let mut label = Label::new(self.did(), uri, val, neg);
        label.sign(&self.key)?;
        let conn = self.store.lock();
        let seq = Store::insert_label(&conn, &label, self.key_id, reason, actor)?;
        let stored = StoredLabel {
            seq,
            label,
            key_id: self.key_id,
            reason: reason.map(str::to_string),
            actor: actor.to_string(),
        };
        // Sent under the lock so subscribers see labels in `seq` order.
        let _ = self.live.send(Arc::new(stored.clone()));
        drop(conn);
        tracing::info!(seq, uri, val, neg, actor, "label published");
        Ok(stored)
    }

    /// Makes (`uri`, `val`) stand or not; emits only when that changes its current state.
    pub fn apply(
        &self,
        uri: &str,
        val: &str,
        want: bool,
        reason: &str,
        actor: &str,
    ) -> Result<Option<StoredLabel>, LabelerError> {
        if self.store.is_active(uri, val)? == want {
            return Ok(None);
        }
        self.emit(uri, val, !want, Some(reason), actor).map(Some)
    }

    /// Ends every label subscription (shutdown).
    pub fn close(&self) {
        self.closing.cancel();
    }

    /// Live labels from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredLabel>> {
        self.live.subscribe()
    }

    /// Records an attestation `did` published (from Jetstream, or in-process from enrollment)
    /// and checks the DID now.
    pub fn attested(
        &self,
        did: &str,
        rkey: &str,
        record: &atmos_lexicons::Attestation,
    ) -> Result<(), LabelerError> {
        self.store.put_attestation(did, rkey, record, now())?;
        self.check_now(did)
    }

    /// Records that `did` deleted its attestation for `rkey` and checks the DID now.
    pub fn withdrawn(&self, did: &str, rkey: &str) -> Result<(), LabelerError> {
        self.store.delete_attestation(did, rkey, now())?;
        self.check_now(did)
    }

    /// Asks the verifier to check `did` now (member changes, admin request, new attestation).
    pub fn check_now(&self, did: &str) -> Result<(), LabelerError> {
        self.store.schedule(did, now(), true)?;
        self.wake.notify_one();
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Keeps "sealed" keys as they are; tests only.
    struct PlainSealer;

    impl Sealer for PlainSealer {
        fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, String> {
            Ok(plain.to_vec())
        }
        fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, String> {
            Ok(sealed.to_vec())
        }
    }

    /// A labeler on an in-memory store.
    pub fn labeler() -> Labeler {
        let settings = Settings {
            did: "did:web:labeler.test".into(),
            endpoint: "https://labeler.test".into(),
            reverify_interval: Duration::from_secs(86_400),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
            plc_url: "http://127.0.0.1:9".into(),
            max_subscribers: 4,
            reports_per_minute: 60,
        };
        Labeler::open(
            Store::in_memory().expect("store"),
            settings,
            &PlainSealer,
            None,
            None,
        )
        .expect("labeler")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn apply_emits_only_on_change_and_subscribers_see_seq_order() {
        let l = super::testing::labeler();
        let mut live = l.subscribe();
        assert!(
            l.apply("did:plc:x", "v", true, "r", "t")
                .expect("apply")
                .is_some()
        );
        assert!(
            l.apply("did:plc:x", "v", true, "r", "t")
                .expect("apply")
                .is_none()
        );
        let neg = l
            .apply("did:plc:x", "v", false, "r", "t")
            .expect("apply")
            .expect("negation");
        assert!(neg.label.neg && neg.label.verify(l.verifying_key()));
        assert_eq!(live.try_recv().expect("first").seq, 1);
        assert_eq!(live.try_recv().expect("second").seq, 2);
        assert!(!l.store.is_active("did:plc:x", "v").expect("db"));
    }
}
