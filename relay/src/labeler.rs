//! The relay's side of the co-located labeler: it opens the labeler with the relay's key
//! sealing, shows it the members and their DKIM keys, and starts its verifier and Jetstream
//! consumer. Member changes reach it through `relay_events` (the CLI writes them from another
//! process, so the event log is the one path every change takes).

use crate::config::Config;
use crate::secrets::Secrets;
use crate::store::members::{self, MemberState};
use crate::store::{Store, dkim_keys};
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
                    let selectors = dkim_keys::active(c, &d.domain)?
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
            .with(|c| {
                let marks = vec!["?"; MEMBER_EVENTS.len()].join(", ");
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT id, did FROM relay_events WHERE id > ? AND did IS NOT NULL
                     AND type IN ({marks}) ORDER BY id LIMIT 1000"
                ))?;
                let mut args: Vec<rusqlite::types::Value> = vec![after.into()];
                args.extend(MEMBER_EVENTS.iter().map(|t| t.to_string().into()));
                let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
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
        plc_url: l.plc_url.clone(),
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
    if s.len() != 64 {
        return None;
    }
    (0..32)
        .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// Opens the labeler (generating its key on first start).
pub fn open(config: &Config, secrets: Arc<Secrets>) -> Result<Arc<Labeler>, LabelerSetupError> {
    let settings = settings(config);
    let key = configured_key(config, &settings.did)?;
    let store = atmos_labeler::store::Store::open(&config.server.data_dir)?;
    Ok(Arc::new(Labeler::open(
        store,
        settings,
        &KekSealer(secrets),
        key,
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
