//! Member credentials: API keys (generate, bcrypt-hash, verify with a cache) and the per-IP
//! throttle for repeated authentication failures.

use crate::connections::ClientNet;
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
    /// The client's network failed too often; retry after this many seconds.
    #[error("too many authentication failures")]
    Throttled(u64),
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

/// True for `atmos_` + 32 base62 characters.
pub fn well_formed_key(key: &str) -> bool {
    key.strip_prefix(API_KEY_PREFIX).is_some_and(|rest| {
        rest.len() == API_KEY_RANDOM_LEN && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// Where concurrent logins with one key wait for its verdict (`Some(valid)` once known).
type Gate = Arc<tokio::sync::Mutex<Option<bool>>>;

/// Forgets a login's gate when the login ends, however it ends.
struct ForgetGate<'a> {
    auth: &'a Authenticator,
    digest: [u8; 32],
    gate: Gate,
}

impl Drop for ForgetGate<'_> {
    fn drop(&mut self) {
        self.auth.forget_gate(&self.digest, &self.gate);
    }
}

/// Verifies member credentials for SMTP and HTTP alike.
///
/// A successful bcrypt check is cached: a SHA-256 of (DID, key) maps to the bcrypt hash that key
/// matched. Each login still reads the member row, so a suspension applies at once, and a
/// regenerated key (a new stored hash) no longer matches, so the old key stops working at once.
///
/// What a stranger can make it spend is bounded: every attempt that needs bcrypt is first
/// reserved in the [`AuthThrottle`] (so a flood is refused before it is paid for), one client
/// network runs one bcrypt at a time, and all of them share as many bcrypt slots as there are
/// cores. An unknown DID, a malformed key and a wrong key all cost one bcrypt at the real cost.
pub struct Authenticator {
    verified: Mutex<HashMap<[u8; 32], String>>,
    /// One gate per key being verified, holding its verdict once known, so concurrent logins
    /// with one key pay bcrypt once.
    verifying: Mutex<HashMap<[u8; 32], Gate>>,
    throttle: AuthThrottle,
    /// bcrypt runs at most this many at once.
    slots: tokio::sync::Semaphore,
    /// One bcrypt at a time per client network.
    per_client: Mutex<HashMap<ClientNet, Arc<tokio::sync::Mutex<()>>>>,
    /// bcrypt verifications run so far (for tests and metrics).
    bcrypt_runs: std::sync::atomic::AtomicU64,
}

impl Default for Authenticator {
    fn default() -> Self {
        Self::new(AuthThrottle::default())
    }
}

impl Authenticator {
    /// An authenticator with `throttle`, sized to the machine's cores.
    pub fn new(throttle: AuthThrottle) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            verified: Mutex::new(HashMap::new()),
            verifying: Mutex::new(HashMap::new()),
            throttle,
            slots: tokio::sync::Semaphore::new(cores),
            per_client: Mutex::new(HashMap::new()),
            bcrypt_runs: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many bcrypt verifications ran.
    pub fn bcrypt_runs(&self) -> u64 {
        self.bcrypt_runs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The failure throttle (shared by every listener).
    pub fn throttle(&self) -> &AuthThrottle {
        &self.throttle
    }

    /// Checks `username` (DID or handle) and `key` for a client at `peer`; returns the active
    /// member.
    pub async fn authenticate(
        &self,
        store: &Arc<Store>,
        username: &str,
        key: &str,
        peer: IpAddr,
    ) -> Result<Member, AuthError> {
        let net = ClientNet::of(peer);
        let username = username.trim();
        let member = store.with(|c| {
            if username.starts_with("did:") {
                members::get(c, username)
            } else {
                members::get_by_handle(c, &username.to_ascii_lowercase())
            }
        })?;
        let digest = member.as_ref().map(|m| cache_key(&m.did, key));
        let cached = match (&member, &digest) {
            (Some(m), Some(d)) => self.is_cached(d, &m.api_key_hash),
            _ => false,
        };
        // A key already verified costs no bcrypt, so it is not refused because others on its
        // network (behind the same proxy or NAT) keep failing.
        if !cached && let Some(secs) = self.throttle.blocked(net) {
            return Err(AuthError::Throttled(secs));
        }
        if !cached {
            let ticket = Ticket::new(&self.throttle, net);
            let verified = match (&member, digest) {
                (Some(m), Some(digest)) if well_formed_key(key) => {
                    self.verify_once(digest, key, &m.api_key_hash, &ticket)
                        .await
                }
                // Unknown users and malformed keys cost the same as a wrong key.
                _ => {
                    ticket.reserve().map_err(AuthError::Throttled)?;
                    let _ = self
                        .bcrypt(net, key.to_string(), dummy_hash().to_string())
                        .await;
                    Err(AuthError::InvalidCredentials)
                }
            };
            if let Err(e) = verified {
                // A deliberate tarpit for repeated failures from one network (nothing to wait
                // for when the attempt was refused before it was reserved).
                tokio::time::sleep(ticket.failed()).await;
                return Err(e);
            }
        }
        let Some(member) = member else {
            return Err(AuthError::InvalidCredentials);
        };
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

    /// Verifies `key` against `hash`, paying bcrypt once for concurrent logins with one key:
    /// the first reserves an attempt and runs bcrypt; the others wait for its verdict without
    /// reserving, so an application's pool of connections logging in at once after a restart is
    /// not taken for a flood. A wrong key's followers still count one failure each. Returns with
    /// the attempt ended as a success, or reserved and still to be ended as a failure.
    async fn verify_once(
        &self,
        digest: [u8; 32],
        key: &str,
        hash: &str,
        ticket: &Ticket<'_>,
    ) -> Result<(), AuthError> {
        let net = ticket.net;
        let (gate, follower) = self
            .verifying
            .lock()
            .map(|mut m| {
                let follower = m.contains_key(&digest);
                (m.entry(digest).or_default().clone(), follower)
            })
            .unwrap_or_default();
        // Whatever way this returns (an error, a throttle, the caller dropping the future),
        // the gate leaves the map once nobody waits on it: no entry outlives its logins.
        let _forget = ForgetGate {
            auth: self,
            digest,
            gate: gate.clone(),
        };
        if !follower && let Err(secs) = ticket.reserve() {
            return Err(AuthError::Throttled(secs));
        }
        let mut verdict = gate.lock().await;
        // A follower trusts only the cache, which checks the stored hash: a key regenerated
        // meanwhile stops working at once.
        let result = if self.is_cached(&digest, hash) {
            if !follower {
                ticket.succeeded();
            }
            Ok(())
        } else if follower && *verdict == Some(false) {
            // The leader just proved this very key wrong: no second bcrypt, one more failure.
            ticket.reserve().map_err(AuthError::Throttled)?;
            Err(AuthError::InvalidCredentials)
        } else {
            // The leader, or a follower whose leader gave up before a verdict.
            if follower {
                ticket.reserve().map_err(AuthError::Throttled)?;
            }
            let ok = self.bcrypt(net, key.to_string(), hash.to_string()).await?;
            *verdict = Some(ok);
            if ok {
                if let Ok(mut cache) = self.verified.lock() {
                    if cache.len() >= CACHE_CAPACITY {
                        cache.clear();
                    }
                    cache.insert(digest, hash.to_string());
                }
                ticket.succeeded();
                Ok(())
            } else {
                Err(AuthError::InvalidCredentials)
            }
        };
        drop(verdict);
        result
    }

    /// Drops the gate of `digest` once no login waits on it any more.
    fn forget_gate(&self, digest: &[u8; 32], gate: &Gate) {
        if let Ok(mut m) = self.verifying.lock() {
            // The map's, the caller's and its ticket's: nobody else holds it.
            if m.get(digest).is_some_and(|g| Arc::ptr_eq(g, gate)) && Arc::strong_count(gate) <= 3 {
                m.remove(digest);
            }
        }
    }

    /// One bcrypt verification, queued behind this client network's previous one and behind the
    /// shared slots.
    async fn bcrypt(&self, net: ClientNet, key: String, hash: String) -> Result<bool, AuthError> {
        let lane = self
            .per_client
            .lock()
            .map(|mut m| {
                if m.len() > 100_000 {
                    m.retain(|_, l| Arc::strong_count(l) > 1);
                }
                m.entry(net).or_default().clone()
            })
            .unwrap_or_default();
        let _lane = lane.lock().await;
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| AuthError::Internal)?;
        self.bcrypt_runs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::task::spawn_blocking(move || bcrypt::verify(key, &hash).unwrap_or(false))
            .await
            .map_err(|_| AuthError::Internal)
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

/// The attempts one login reserved in the throttle. Each ends exactly once, however the login
/// ends: answered, or abandoned mid-bcrypt by a client that went away (counted as a failure:
/// its bcrypt runs anyway). Without it, abandoned reservations stayed pending and could block a
/// network until restart.
struct Ticket<'a> {
    throttle: &'a AuthThrottle,
    net: ClientNet,
    open: std::sync::atomic::AtomicU32,
}

impl<'a> Ticket<'a> {
    fn new(throttle: &'a AuthThrottle, net: ClientNet) -> Self {
        Self {
            throttle,
            net,
            open: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// Reserves one more attempt (refused when the network is over its limit).
    fn reserve(&self) -> Result<(), u64> {
        self.throttle.reserve(self.net)?;
        self.open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    fn take_one(&self) -> bool {
        self.open
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok()
    }

    /// Ends a reserved attempt as a success.
    fn succeeded(&self) {
        if self.take_one() {
            self.throttle.succeeded(self.net);
        }
    }

    /// Ends a reserved attempt as a failure; how long to wait before answering.
    fn failed(&self) -> Duration {
        if self.take_one() {
            self.throttle.failed(self.net)
        } else {
            Duration::ZERO
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        while self.take_one() {
            self.throttle.failed(self.net);
        }
    }
}

/// Slows, then refuses, client networks that keep failing authentication (BEHAVIOUR §4.1), on SMTP
/// and HTTP alike. Attempts in flight count as failures until they succeed, so a burst of
/// concurrent guesses is refused before bcrypt is paid for it.
pub struct AuthThrottle {
    entries: Mutex<HashMap<ClientNet, Entry>>,
    /// Failures before each further failure is delayed.
    pub slow_after: u32,
    /// Failures (and attempts in flight) before the network is refused until the window ends.
    pub block_after: u32,
    pub window: Duration,
}

struct Entry {
    failures: u32,
    pending: u32,
    since: Instant,
}

impl Default for AuthThrottle {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            slow_after: 3,
            block_after: 20,
            window: Duration::from_secs(600),
        }
    }
}

impl AuthThrottle {
    fn with_entry<R>(&self, net: ClientNet, f: impl FnOnce(&mut Entry, Duration) -> R) -> R {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            let window = self.window;
            map.retain(|_, e| e.pending > 0 || e.since.elapsed() <= window);
        }
        let e = map.entry(net).or_insert(Entry {
            failures: 0,
            pending: 0,
            since: Instant::now(),
        });
        if e.pending == 0 && e.since.elapsed() > self.window {
            *e = Entry {
                failures: 0,
                pending: 0,
                since: Instant::now(),
            };
        }
        let left = self.window.saturating_sub(e.since.elapsed());
        f(e, left)
    }

    /// Seconds until `net` may try again, when it is refused now.
    pub fn blocked(&self, net: ClientNet) -> Option<u64> {
        self.with_entry(net, |e, left| {
            (e.failures + e.pending >= self.block_after).then(|| left.as_secs().max(1))
        })
    }

    /// True when `ip`'s network is refused now.
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        self.blocked(ClientNet::of(ip)).is_some()
    }

    /// Reserves an attempt for `net` (it counts as a failure until it ends); refused when the
    /// network is over its limit.
    pub fn reserve(&self, net: ClientNet) -> Result<(), u64> {
        self.with_entry(net, |e, left| {
            if e.failures + e.pending >= self.block_after {
                return Err(left.as_secs().max(1));
            }
            e.pending += 1;
            Ok(())
        })
    }

    /// Ends a reserved attempt as a failure; returns how long to wait before answering it.
    pub fn failed(&self, net: ClientNet) -> Duration {
        self.with_entry(net, |e, _| {
            e.pending = e.pending.saturating_sub(1);
            e.failures += 1;
            let over = e.failures.saturating_sub(self.slow_after);
            Duration::from_millis(250 * u64::from(over.min(8)))
        })
    }

    /// Ends a reserved attempt as a success: the network's failures are forgotten.
    pub fn succeeded(&self, net: ClientNet) {
        self.with_entry(net, |e, _| {
            e.pending = e.pending.saturating_sub(1);
            e.failures = 0;
        })
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

    /// A member's pool of 50 connections logging in at once on a cold cache (after a restart)
    /// is one bcrypt and 50 successes, not a flood; 50 logins with one wrong key are 50 failures
    /// and at most 20 bcrypts, and the network is blocked; distinct wrong keys meet the cap too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pool_of_logins_with_one_key_pays_bcrypt_once() {
        let (_d, store) = test_store();
        let store = Arc::new(store);
        let key = generate_api_key();
        add(&store, "did:plc:a", &key, MemberState::Active);
        let auth = Arc::new(Authenticator::default());
        let at = |ip: [u8; 4]| IpAddr::from(ip);
        let logins = |key: String, ip: IpAddr, n: usize| {
            let (auth, store) = (auth.clone(), store.clone());
            async move {
                let tasks: Vec<_> = (0..n)
                    .map(|_| {
                        let (auth, store, key) = (auth.clone(), store.clone(), key.clone());
                        tokio::spawn(async move {
                            auth.authenticate(&store, "did:plc:a", &key, ip)
                                .await
                                .map(|_| ())
                        })
                    })
                    .collect();
                let mut out = Vec::new();
                for t in tasks {
                    out.push(t.await.expect("login task"));
                }
                out
            }
        };
        let ok = logins(key.clone(), at([10, 0, 0, 1]), 50).await;
        assert!(ok.iter().all(|r| r.is_ok()), "{ok:?}");
        assert_eq!(auth.bcrypt_runs(), 1);

        let wrong = generate_api_key();
        let bad = logins(wrong.clone(), at([10, 0, 0, 2]), 50).await;
        assert!(bad.iter().all(|r| r.is_err()), "{bad:?}");
        assert!(
            bad.iter().all(|r| matches!(
                r,
                Err(AuthError::InvalidCredentials | AuthError::Throttled(_))
            )),
            "{bad:?}"
        );
        // Tries that overlap share one bcrypt; later ones pay their own, and the cap still holds
        // (followers that wait for a verdict do not slip past it).
        assert!(
            auth.bcrypt_runs() - 1 <= 20,
            "{} bcrypts for one wrong key",
            auth.bcrypt_runs() - 1
        );
        assert!(
            auth.throttle().is_blocked(at([10, 0, 0, 2])),
            "the failures counted"
        );
        assert!(!auth.throttle().is_blocked(at([10, 0, 0, 1])));

        // 40 different wrong keys at once: the cap (20) refuses the rest before bcrypt.
        let before = auth.bcrypt_runs();
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let (auth, store) = (auth.clone(), store.clone());
                tokio::spawn(async move {
                    auth.authenticate(&store, "did:plc:a", &generate_api_key(), at([10, 0, 0, 3]))
                        .await
                        .map(|_| ())
                })
            })
            .collect();
        let mut throttled = 0;
        for t in tasks {
            if matches!(t.await.expect("task"), Err(AuthError::Throttled(_))) {
                throttled += 1;
            }
        }
        assert!(throttled >= 20, "{throttled} throttled");
        assert!(auth.bcrypt_runs() - before <= 20);
        // Every way a login ended (success, failure, throttled while waiting) left its gate.
        assert_eq!(auth.verifying.lock().map(|m| m.len()).unwrap_or(1), 0);
    }

    #[tokio::test]
    async fn verify_cache_and_immediate_revocation() {
        let (_d, store) = test_store();
        let store = Arc::new(store);
        let key = generate_api_key();
        add(&store, "did:plc:a", &key, MemberState::Active);
        let auth = Authenticator::default();
        let ip: IpAddr = [127, 0, 0, 1].into();
        assert_eq!(
            auth.authenticate(&store, "did:plc:a", &key, ip)
                .await
                .unwrap()
                .did,
            "did:plc:a"
        );
        assert_eq!(
            auth.authenticate(&store, "alice.test", &key, ip)
                .await
                .unwrap()
                .did,
            "did:plc:a"
        );
        assert_eq!(
            auth.authenticate(&store, "did:plc:a", "atmos_wrong", ip)
                .await
                .unwrap_err(),
            AuthError::InvalidCredentials
        );
        assert_eq!(
            auth.authenticate(&store, "did:plc:nobody", &key, ip)
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
            auth.authenticate(&store, "did:plc:a", &key, ip)
                .await
                .unwrap_err(),
            AuthError::InvalidCredentials
        );
        auth.authenticate(&store, "did:plc:a", &new_key, ip)
            .await
            .unwrap();
        // Suspension applies at once, even with a cached key.
        store
            .with(|c| members::set_state(c, "did:plc:a", MemberState::Suspended, None, 1))
            .unwrap();
        assert_eq!(
            auth.authenticate(&store, "did:plc:a", &new_key, ip)
                .await
                .unwrap_err(),
            AuthError::Suspended
        );
    }

    #[test]
    fn throttle_slows_then_blocks_and_counts_attempts_in_flight() {
        let t = AuthThrottle {
            block_after: 5,
            ..Default::default()
        };
        let ip: IpAddr = [127, 0, 0, 9].into();
        let net = ClientNet::of(ip);
        let fail = || {
            t.reserve(net).unwrap();
            t.failed(net)
        };
        assert_eq!(fail(), Duration::ZERO);
        fail();
        fail();
        assert!(fail() > Duration::ZERO);
        assert!(!t.is_blocked(ip));
        // The fifth attempt is in flight: a sixth is refused before it is paid for.
        t.reserve(net).unwrap();
        assert!(t.reserve(net).is_err());
        assert!(t.is_blocked(ip));
        t.succeeded(net);
        assert!(!t.is_blocked(ip));
        // Another address of the same IPv6 /64 is the same client.
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        for _ in 0..5 {
            t.reserve(ClientNet::of(a)).unwrap();
            t.failed(ClientNet::of(a));
        }
        assert!(t.is_blocked(b));
    }

    /// A stranger learns nothing from the cost of a failure: an unknown DID, a known DID with a
    /// malformed key and one with a wrong key each cost exactly one bcrypt.
    #[tokio::test]
    async fn every_failure_costs_one_bcrypt() {
        let (_d, store) = test_store();
        let store = Arc::new(store);
        add(
            &store,
            "did:plc:a",
            &generate_api_key(),
            MemberState::Active,
        );
        let auth = Authenticator::default();
        let ip: IpAddr = [127, 0, 0, 3].into();
        for (user, key) in [
            ("did:plc:nobody", generate_api_key()),
            ("did:plc:a", "not-a-key".to_string()),
            ("did:plc:a", "atmos_short".to_string()),
            ("did:plc:a", generate_api_key()),
        ] {
            let before = auth.bcrypt_runs();
            assert_eq!(
                auth.authenticate(&store, user, &key, ip).await.unwrap_err(),
                AuthError::InvalidCredentials
            );
            assert_eq!(auth.bcrypt_runs(), before + 1, "{user} {key}");
        }
    }

    #[test]
    fn key_shape() {
        assert!(well_formed_key(&generate_api_key()));
        assert!(!well_formed_key("atmos_short"));
        assert!(!well_formed_key(&format!("atmos_{}", "+".repeat(32))));
    }

    /// A client that goes away while its attempt waits for bcrypt ends the attempt as a
    /// failure: before, the reservation stayed pending for ever, and a network with pending
    /// attempts was never forgiven when its window passed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_abandoned_login_ends_its_reservation() {
        let (_d, store) = test_store();
        let store = Arc::new(store);
        let auth = Arc::new(Authenticator::new(AuthThrottle {
            window: Duration::from_millis(300),
            block_after: 3,
            ..AuthThrottle::default()
        }));
        let ip = IpAddr::from([192, 0, 2, 9]);
        for n in 1..=3 {
            let (a, store) = (auth.clone(), store.clone());
            // An unknown DID costs a dummy bcrypt at the real cost: abandoned long before it ends.
            let login = tokio::spawn(async move {
                a.authenticate(&store, "did:plc:nobody", "atmos_x", ip)
                    .await
            });
            // Its bcrypt has started (so its attempt is reserved) when the client goes away.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while auth.bcrypt_runs() < n {
                assert!(std::time::Instant::now() < deadline, "bcrypt never started");
                tokio::task::yield_now().await;
            }
            login.abort();
            let _ = login.await;
        }
        assert!(auth.throttle().is_blocked(ip), "three failures block");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            !auth.throttle().is_blocked(ip),
            "forgiven once the window passed (no attempt left pending)"
        );
    }
}
