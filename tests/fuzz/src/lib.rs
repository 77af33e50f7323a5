//! What the fuzz targets share: fixed keys and names, so every run is reproducible.

use atmos_relay::secrets::Secrets;
use std::sync::OnceLock;

/// The operator domain the targets' tokens and VERP addresses use.
pub const OPERATOR_DOMAIN: &str = "pool.example";

/// One KEK for every execution (tokens made in one run parse in the next).
pub fn secrets() -> &'static Secrets {
    static S: OnceLock<Secrets> = OnceLock::new();
    S.get_or_init(|| Secrets::from_key(&[7u8; 32]))
}

/// A single-threaded runtime with a paused clock: timeouts fire at once instead of waiting.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime")
}

/// Splits fuzz input at the first NUL: two independent fields from one byte string.
pub fn split2(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// Keeps "sealed" keys as they are (the labeler's KEK seal is not under test here).
struct PlainSealer;

impl atmos_labeler::Sealer for PlainSealer {
    fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, String> {
        Ok(plain.to_vec())
    }
    fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, String> {
        Ok(sealed.to_vec())
    }
}

/// A labeler on an in-memory store with a fixed key, holding a few labels; `documents`
/// resolves service-auth issuers.
pub fn labeler(
    documents: Option<std::sync::Arc<dyn atmos_labeler::service_auth::DidDocuments>>,
) -> atmos_labeler::Labeler {
    let settings = atmos_labeler::Settings {
        did: "did:web:labeler.example".into(),
        endpoint: "https://labeler.example".into(),
        reverify_interval: std::time::Duration::from_secs(86_400),
        retry_base: std::time::Duration::from_secs(1),
        retry_max: std::time::Duration::from_secs(30),
        plc_url: "http://127.0.0.1:9".into(),
        max_subscribers: 4,
        reports_per_minute: 60,
    };
    let key = k256::ecdsa::SigningKey::from_slice(&[9u8; 32]).expect("key");
    let l = atmos_labeler::Labeler::open(
        atmos_labeler::store::Store::in_memory().expect("store"),
        settings,
        &PlainSealer,
        Some(key),
        documents,
    )
    .expect("labeler");
    for (i, did) in ["did:plc:aaaa", "did:plc:bbbb", "did:web:c.example"].iter().enumerate() {
        l.apply(did, "verified-mail-operator", true, "seed", "fuzz")
            .expect("label");
        if i == 1 {
            l.apply(did, "verified-mail-operator", false, "seed", "fuzz")
                .expect("negation");
        }
    }
    l
}
