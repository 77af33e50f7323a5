//! Member credentials: API keys (generate, bcrypt-hash, verify with a cache) and the per-IP
//! throttle for repeated authentication failures.

use crate::store::members::{self, Member, MemberState};
use crate::store::{Store, StoreError};
use rand::Rng;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Prefix of every API key.
pub const API_KEY_PREFIX: &str = "atmos_";
const API_KEY_RANDOM_LEN: usize = 32;
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const CACHE_CAPACITY: usize = 10_000;

/// A new API key: `atmos_` + 32 random base62 characters.
pub fn generate_api_key() -> String {
    let mut rng = rand::rng();
    let mut key = String::with_capacity(API_KEY_PREFIX.len() + API_KEY_RANDOM_LEN);
    key.push_str(API_KEY_PREFIX);
    for _ in 0..API_KEY_RANDOM_LEN {
        key.push(BASE62[rng.random_range(0..BASE62.len())] as char);
    }
    key
}

/// bcrypt hash of an API key (the only form stored).
pub fn hash_api_key(key: &str) -> Result<String, bcrypt::BcryptError> {
    bcrypt::hash(key, bcrypt::DEFAULT_COST)
}

/// Why authentication failed; SMTP and HTTP render these differently.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AuthError {
    #[error("authentication credentials invalid")]
    InvalidCredentials,
    #[error("pending operator approval")]
    Pending,
    #[error("account suspended")]
    Suspended,
    #[error("internal error during authentication")]
    Internal,
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "auth: store error");
        Self::Internal
    }
}

/// Verifies member credentials, caching successful bcrypt checks.
///
/// The cache maps a SHA-256 of (DID, key) to the bcrypt hash that key matched. Each login still
/// reads the member row, so a suspension applies at once, and a regenerated key (a new stored
/// hash) no longer matches the cached one, so the old key stops working at once.
#[derive(Default)]
pub struct Authenticator {
    verified: Mutex<HashMap<[u8; 32], String>>,
    /// One lock per key being verified, so concurrent logins with one key pay bcrypt once.
    verifying: Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>>,
}

impl Authenticator {
    /// Checks `username` (DID or handle) and `key`; returns the active member.
    pub async fn authenticate(
        &self,
        store: &Arc<Store>,
        username: &str,
        key: &str,
    ) -> Result<Member, AuthError> {
        let username = username.trim();
        let member = store.with(|c| {
            if username.starts_with("did:") {
                members::get(c, username)
            } else {
                members::get_by_handle(c, &username.to_ascii_lowercase())
            }
        })?;
        let Some(member) = member else {
            // Spend the same effort as a real check so unknown users are not told apart.
            let key = key.to_string();
            let _ = tokio::task::spawn_blocking(move || bcrypt::verify(key, dummy_hash())).await;
            return Err(AuthError::InvalidCredentials);
        };
        if !key.starts_with(API_KEY_PREFIX) {
            return Err(AuthError::InvalidCredentials);
        }
        let digest = cache_key(&member.did, key);
        if !self.is_cached(&digest, &member.api_key_hash) {
            let gate = self
                .verifying
                .lock()
                .map(|mut m| m.entry(digest).or_default().clone())
                .unwrap_or_default();
            let _turn = gate.lock().await;
            let verified = if self.is_cached(&digest, &member.api_key_hash) {
                Ok(())
            } else {
                self.verify_slow(digest, key, &member.api_key_hash).await
            };
            if let Ok(mut m) = self.verifying.lock() {
                m.remove(&digest);
            }
            verified?;
        }
        match member.state {
            MemberState::Active => Ok(member),
            MemberState::Pending => Err(AuthError::Pending),
            MemberState::Suspended => Err(AuthError::Suspended),
        }
    }

    fn is_cached(&self, digest: &[u8; 32], current_hash: &str) -> bool {
        self.verified
            .lock()
            .ok()
            .and_then(|c| c.get(digest).cloned())
            .is_some_and(|h| bool::from(h.as_bytes().ct_eq(current_hash.as_bytes())))
    }

    async fn verify_slow(&self, digest: [u8; 32], key: &str, hash: &str) -> Result<(), AuthError> {
        let (k, h) = (key.to_string(), hash.to_string());
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(k, &h).unwrap_or(false))
            .await
            .map_err(|_| AuthError::Internal)?;
        if !ok {
            return Err(AuthError::InvalidCredentials);
        }
        if let Ok(mut cache) = self.verified.lock() {
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(digest, hash.to_string());
        }
        Ok(())
    }
}

/// A bcrypt hash of a random string at the real cost, for equal-cost failures.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_api_key(&generate_api_key()).unwrap_or_default())
}

fn cache_key(did: &str, key: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(did.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    h.finalize().into()
}

/// Slows, then refuses, clients that keep failing authentication (SPEC §4.1).
pub struct AuthThrottle {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    /// Failures before each further failure is delayed.
    pub slow_after: u32,
    /// Failures before the address is refused until the window ends.
    pub block_after: u32,
    pub window: Duration,
}

impl Default for AuthThrottle {
    fn default() -> Self {
        Self {
            failures: Mutex::new(HashMap::new()),
            slow_after: 3,
            block_after: 20,
            window: Duration::from_secs(600),
        }
    }
}

impl AuthThrottle {
    /// True when `ip` has failed too often and must be refused for now.
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        let Ok(mut map) = self.failures.lock() else {
            return false;
        };
        match map.get(&ip) {
            Some((_, since)) if since.elapsed() > self.window => {
                map.remove(&ip);
                false
            }
            Some((n, _)) => *n >= self.block_after,
            None => false,
        }
    }

    /// Records a failure; returns how long to wait before answering it.
    pub fn failed(&self, ip: IpAddr) -> Duration {
        let Ok(mut map) = self.failures.lock() else {
            return Duration::ZERO;
        };
        if map.len() > 100_000 {
            map.clear();
        }
        let entry = map.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() > self.window {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
        let over = entry.0.saturating_sub(self.slow_after);
        Duration::from_millis(250 * u64::from(over.min(8)))
    }

    /// Forgets an address after a success.
    pub fn succeeded(&self, ip: IpAddr) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    #[test]
    fn key_format() {
        let k = generate_api_key();
        assert_eq!(k.len(), 38);
        assert!(k.starts_with("atmos_"));
        assert!(k[6..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(k, generate_api_key());
    }

    fn add(store: &Store, did: &str, key: &str, state: MemberState) {
        let hash = bcrypt::hash(key, 4).unwrap();
        store
            .write(|tx| {
                members::insert(
                    tx,
                    &Member {
                        did: did.into(),
                        handle: Some("alice.test".into()),
                        state,
                        state_reason: None,
                        api_key_hash: hash,
                        hourly_limit: None,
                        daily_limit: None,
                        created_at: 0,
                        approved_at: None,
                    },
                )
            })
            .unwrap();
    }

    #[tokio::test]
    async fn verify_cache_and_immediate_revocation() {
        let (_d, store) = test_store();
        let store = Arc::new(store);
        let key = generate_api_key();
        add(&store, "did:plc:a", &key, MemberState::Active);
        let auth = Authenticator::default();
        assert_eq!(
            auth.authenticate(&store, "did:plc:a", &key)
                .await
                .unwrap()
                .did,
            "did:plc:a"
        );
        assert_eq!(
            auth.authenticate(&store, "alice.test", &key)
                .await
                .unwrap()
                .did,
            "did:plc:a"
        );
        assert_eq!(
            auth.authenticate(&store, "did:plc:a", "atmos_wrong")
                .await
                .unwrap_err(),
            AuthError::InvalidCredentials
        );
        assert_eq!(
            auth.authenticate(&store, "did:plc:nobody", &key)
                .await
                .unwrap_err(),
            AuthError::InvalidCredentials
        );
        // Regenerating the key invalidates the cached verification.
        let new_key = generate_api_key();
        let new_hash = bcrypt::hash(&new_key, 4).unwrap();
        store
            .with(|c| members::set_api_key_hash(c, "did:plc:a", &new_hash))
            .unwrap();
        assert_eq!(
            auth.authenticate(&store, "did:plc:a", &key)
                .await
                .unwrap_err(),
            AuthError::InvalidCredentials
        );
        auth.authenticate(&store, "did:plc:a", &new_key)
            .await
            .unwrap();
        // Suspension applies at once, even with a cached key.
        store
            .with(|c| members::set_state(c, "did:plc:a", MemberState::Suspended, None, 1))
            .unwrap();
        assert_eq!(
            auth.authenticate(&store, "did:plc:a", &new_key)
                .await
                .unwrap_err(),
            AuthError::Suspended
        );
    }

    #[test]
    fn throttle_slows_then_blocks() {
        let t = AuthThrottle {
            block_after: 5,
            ..Default::default()
        };
        let ip: IpAddr = [127, 0, 0, 9].into();
        assert_eq!(t.failed(ip), Duration::ZERO);
        t.failed(ip);
        t.failed(ip);
        assert!(t.failed(ip) > Duration::ZERO);
        assert!(!t.is_blocked(ip));
        t.failed(ip);
        assert!(t.is_blocked(ip));
        t.succeeded(ip);
        assert!(!t.is_blocked(ip));
    }
}
