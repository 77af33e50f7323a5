//! The relay's side of the co-located labeler: it opens the labeler with the relay's key
//! sealing, shows it the members and their DKIM keys, and starts its verifier and Jetstream
//! consumer. Member changes reach it through `relay_events` (the CLI writes them from another
//! process, so the event log is the one path every change takes).

use crate::config::Config;
use crate::secrets::Secrets;
use crate::store::members::{self, MemberState};
use crate::store::{Store, dkim_keys, events};
use atmos_labeler::verification::{Directory, DomainKeys, MemberView, Standing};
use atmos_labeler::{Labeler, LabelerError, Sealer, Settings};
use std::sync::Arc;

/// Environment variable with the hex private key of a configured labeler DID.
pub const SIGNING_KEY_ENV: &str = "ATMOS_LABELER_SIGNING_KEY";
/// AEAD context binding sealed labeler keys to their purpose.
const SEAL_CONTEXT: &[u8] = b"atmos labeler signing key";
/// Event types after which a member's labels are re-checked.
const MEMBER_EVENTS: &[&str] = &[
    "member_enrolled",
    "member_approved",
    "member_suspended",
    "member_reactivated",
    "domain_added",
];

struct KekSealer(Arc<Secrets>);

impl Sealer for KekSealer {
    fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, String> {
        self.0.seal(plain, SEAL_CONTEXT).map_err(|e| e.to_string())
    }
    fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, String> {
        self.0.open(sealed, SEAL_CONTEXT).map_err(|e| e.to_string())
    }
}

/// Members and keys from the relay store.
pub struct RelayDirectory(pub Arc<Store>);

impl Directory for RelayDirectory {
    fn member(&self, did: &str) -> Result<Option<MemberView>, String> {
        self.0
            .with(|c| {
                let Some(m) = members::get(c, did)? else {
                    return Ok(None);
                };
                let mut domains = Vec::new();
                for d in members::domains_of(c, did)? {
                    let selectors = dkim_keys::current(c, &d.domain)?
                        .into_iter()
                        .map(|k| (k.selector, k.public_key))
                        .collect();
                    domains.push(DomainKeys {
                        domain: d.domain,
                        selectors,
                    });
                }
                let standing = match m.state {
                    MemberState::Active => Standing::Active,
                    MemberState::Suspended => Standing::Suspended,
                    MemberState::Pending => Standing::Pending,
                };
                Ok(Some(MemberView { standing, domains }))
            })
            .map_err(|e| e.to_string())
    }

    fn changes_since(&self, after: i64) -> Result<Vec<(i64, String)>, String> {
        self.0
            .with(|c| events::dids_after(c, after, MEMBER_EVENTS, 1000))
            .map_err(|e| e.to_string())
    }
}

/// Why the labeler could not start.
#[derive(Debug, thiserror::Error)]
pub enum LabelerSetupError {
    #[error(transparent)]
    Labeler(#[from] LabelerError),
    #[error(transparent)]
    Store(#[from] atmos_labeler::store::StoreError),
    #[error("labeler.did {did:?}: {message}")]
    Identity { did: String, message: String },
}

/// The labeler's settings from `[labeler]` and `[server]`.
pub fn settings(config: &Config) -> Settings {
    let l = &config.labeler;
    Settings {
        did: if l.did.is_empty() {
            atmos_labeler::identity::did_web(&config.server.hostname)
        } else {
            l.did.clone()
        },
        endpoint: if l.endpoint.is_empty() {
            format!("https://{}", config.server.hostname)
        } else {
            l.endpoint.trim_end_matches('/').to_string()
        },
        reverify_interval: l.reverify_interval,
        retry_base: l.retry_base,
        retry_max: l.retry_max,
        plc_url: config.plc_url(),
        max_subscribers: l.max_subscribers,
        reports_per_minute: l.reports_per_minute,
    }
}

/// The configured key of a non-did:web identity, from the environment or `signing_key_file`.
fn configured_key(
    config: &Config,
    did: &str,
) -> Result<Option<k256::ecdsa::SigningKey>, LabelerSetupError> {
    if did.starts_with("did:web:") && config.labeler.did.is_empty() {
        return Ok(None);
    }
    let bad = |message: String| LabelerSetupError::Identity {
        did: did.into(),
        message,
    };
    let hex = match std::env::var(SIGNING_KEY_ENV) {
        Ok(v) => v,
        Err(_) if !config.labeler.signing_key_file.as_os_str().is_empty() => {
            std::fs::read_to_string(&config.labeler.signing_key_file)
                .map_err(|e| bad(format!("signing_key_file: {e}")))?
        }
        // A configured did:web may still use a generated key.
        Err(_) if did.starts_with("did:web:") => return Ok(None),
        Err(_) => {
            return Err(bad(format!(
                "needs {SIGNING_KEY_ENV} or labeler.signing_key_file"
            )));
        }
    };
    let bytes =
        decode_hex(hex.trim()).ok_or_else(|| bad("signing key is not 64 hex digits".into()))?;
    k256::ecdsa::SigningKey::from_slice(&bytes)
        .map(Some)
        .map_err(|_| bad("signing key is not a valid secp256k1 scalar".into()))
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    base16ct::mixed::decode_vec(s)
        .ok()
        .filter(|b| b.len() == 32)
}

/// Opens the labeler (generating its key on first start); it resolves report issuers through
/// the relay's identity resolver.
pub fn open(
    config: &Config,
    secrets: Arc<Secrets>,
    identity: Arc<crate::identity::Resolver>,
) -> Result<Arc<Labeler>, LabelerSetupError> {
    let settings = settings(config);
    let key = configured_key(config, &settings.did)?;
    let store = atmos_labeler::store::Store::open(&config.server.data_dir)?;
    Ok(Arc::new(Labeler::open(
        store,
        settings,
        &KekSealer(secrets),
        key,
        Some(identity),
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_keys_decode_strictly() {
        assert_eq!(decode_hex(&"0a".repeat(32)), Some(vec![10u8; 32]));
        assert_eq!(decode_hex("0a"), None);
        assert_eq!(decode_hex(&"zz".repeat(32)), None);
    }
}
