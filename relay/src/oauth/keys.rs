//! The confidential client's ES256 keys: made on first start, sealed with the KEK, published at
//! `/oauth/jwks.json`. Rotation is two steps so authorization servers can see a key before it
//! signs: `atmos oauth rotate-key` publishes a next key; `--promote` makes it sign and retires
//! the old one (no longer published).

use super::jose::EsKey;
use crate::secrets::Secrets;
use crate::store::{Store, StoreError, now_ms, oauth_keys};
use std::sync::Arc;

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("sealing: {0}")]
    Seal(String),
    #[error("no next key to promote: run `atmos oauth rotate-key` first")]
    NoNext,
    #[error("a stored client key is corrupt")]
    Corrupt,
}

fn context(kid: &str) -> Vec<u8> {
    format!("oauth client key {kid}").into_bytes()
}

/// The client keys, read from the store when needed (the CLI rotates from another process).
pub struct ClientKeys {
    store: Arc<Store>,
    secrets: Arc<Secrets>,
}

impl ClientKeys {
    /// The keys in `store`; makes the first one when there is none.
    pub fn open(store: Arc<Store>, secrets: Arc<Secrets>) -> Result<Self, KeyError> {
        let keys = Self { store, secrets };
        if keys.store.with(|c| oauth_keys::active(c))?.is_none() {
            keys.add("active")?;
        }
        Ok(keys)
    }

    fn add(&self, state: &str) -> Result<String, KeyError> {
        let key = EsKey::generate();
        let kid = format!("atmos-{}", &key.thumbprint()[..16]);
        let sealed = self
            .secrets
            .seal(&key.to_bytes(), &context(&kid))
            .map_err(|e| KeyError::Seal(e.to_string()))?;
        let now = now_ms();
        self.store
            .write(|tx| oauth_keys::insert(tx, &kid, &sealed, state, now))?;
        Ok(kid)
    }

    fn unseal(&self, row: &oauth_keys::KeyRow) -> Result<EsKey, KeyError> {
        let plain = self
            .secrets
            .open(&row.sealed, &context(&row.kid))
            .map_err(|e| KeyError::Seal(e.to_string()))?;
        EsKey::from_bytes(&plain).ok_or(KeyError::Corrupt)
    }

    /// The key that signs client assertions: (kid, key).
    pub fn signing(&self) -> Result<(String, EsKey), KeyError> {
        let row = self
            .store
            .with(|c| oauth_keys::active(c))?
            .ok_or(KeyError::Corrupt)?;
        Ok((row.kid.clone(), self.unseal(&row)?))
    }

    /// `{"keys": [...]}`: the signing key and a next one, public halves only.
    pub fn jwks(&self) -> Result<serde_json::Value, KeyError> {
        let rows = self.store.with(|c| oauth_keys::published(c))?;
        let mut keys = Vec::new();
        for row in &rows {
            keys.push(self.unseal(row)?.public_jwk(Some(&row.kid)));
        }
        Ok(serde_json::json!({ "keys": keys }))
    }

    /// Publishes a next key (it signs only once promoted); returns its kid.
    pub fn rotate(&self) -> Result<String, KeyError> {
        if let Some(next) = self.store.with(|c| oauth_keys::next(c))? {
            return Ok(next.kid);
        }
        self.add("next")
    }

    /// Makes the next key sign and retires the current one; returns the new kid.
    pub fn promote(&self) -> Result<String, KeyError> {
        let next = self
            .store
            .with(|c| oauth_keys::next(c))?
            .ok_or(KeyError::NoNext)?;
        let now = now_ms();
        let kid = next.kid.clone();
        self.store.write(|tx| oauth_keys::promote(tx, &kid, now))?;
        Ok(next.kid)
    }
}
