//! Web sessions of signed-in members and operators. The browser holds only an opaque
//! `HttpOnly; SameSite=Lax` cookie (`Secure` over https); the row behind it (keyed by the
//! cookie's SHA-256) holds the OAuth tokens and DPoP key sealed with the KEK. Every
//! state-changing request carries the session's CSRF token in `X-CSRF-Token`. Access tokens are
//! refreshed with the same DPoP key, one refresh per session at a time (refresh tokens are
//! single-use).

use super::AppState;
use super::error::ApiError;
use crate::enrollment::{Enrollment, Repo};
use crate::identity::Resolver;
use crate::oauth::jose::{now_s, random_token};
use crate::oauth::{OAuthClient, OAuthError, Tokens};
use crate::store::now_ms;
use crate::store::web_sessions;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The session cookie (with `__Host-` over https: a sibling subdomain cannot plant one with
/// `Domain=`, which would sign the victim in as the attacker).
pub const SESSION_COOKIE: &str = "atmos_session";
/// The cookie that ties a sign-in's callback to the browser that started it.
pub const SIGNIN_COOKIE: &str = "atmos_signin";

/// A cookie's name as set and read: `__Host-<name>` when cookies are `Secure` (the prefix needs
/// `Secure`, `Path=/` and no `Domain`, which is how every cookie here is set).
pub fn cookie_name(name: &'static str, secure: bool) -> std::borrow::Cow<'static, str> {
    if secure {
        format!("__Host-{name}").into()
    } else {
        name.into()
    }
}
/// Web settings from `[web]`.
#[derive(Clone)]
pub struct WebSettings {
    /// Cookies get `Secure` (the UI is served over https).
    pub secure_cookies: bool,
    pub session_idle: Duration,
    pub sessions_per_member: usize,
    pub max_pending: usize,
    pub operator_dids: Vec<String>,
    /// The built UI.
    pub dist_dir: std::path::PathBuf,
    /// `atmos dev`: the embedded DNS zone that the wizard can publish to.
    pub dev_zone: Option<Arc<dyn crate::dns::ZonePublisher>>,
    /// `host:port` of SMTP submission, as members should type it.
    pub submission: String,
    /// Access tokens this close to expiry are refreshed before use.
    pub refresh_margin: Duration,
}

/// What the web side of the relay shares.
pub struct Web {
    pub oauth: OAuthClient,
    pub identity: Arc<Resolver>,
    pub enrollment: Enrollment,
    pub settings: WebSettings,
    refreshing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Sign-ins started per client network.
    pub signins: governor::DefaultKeyedRateLimiter<crate::connections::ClientNet>,
    /// Costly enrollment calls per DID (anyone who signs in can make them).
    pub per_did: PerDid,
}

/// Per-DID rates of the enrollment calls that cost the relay: DNS lookups, RSA keys, a
/// member's domain churn.
pub struct PerDid {
    /// Ownership and record checks (the wizard polls every 5–10 s).
    pub dns_checks: governor::DefaultKeyedRateLimiter<String>,
    /// Domains added.
    pub domain_adds: governor::DefaultKeyedRateLimiter<String>,
    /// Re-enrollments (new key pairs).
    pub rotations: governor::DefaultKeyedRateLimiter<String>,
    /// New API keys (a bcrypt each).
    pub new_keys: governor::DefaultKeyedRateLimiter<String>,
    /// Key work (domains added, re-enrollments, new API keys) per client network (IPv6 /48):
    /// DIDs cost a stranger nothing, so the shared key pool is also shared out by network.
    pub key_work_per_site: governor::DefaultKeyedRateLimiter<String>,
}

fn keyed(per: std::time::Duration, burst: u32) -> governor::DefaultKeyedRateLimiter<String> {
    let burst = std::num::NonZeroU32::new(burst).unwrap_or(std::num::NonZeroU32::MIN);
    let quota = governor::Quota::with_period(per)
        .unwrap_or_else(|| governor::Quota::per_second(std::num::NonZeroU32::MIN))
        .allow_burst(burst);
    governor::RateLimiter::keyed(quota)
}

impl PerDid {
    fn new() -> Self {
        Self {
            dns_checks: keyed(Duration::from_secs(1), 20),
            domain_adds: keyed(Duration::from_secs(360), 10),
            rotations: keyed(Duration::from_secs(60), 2),
            new_keys: keyed(Duration::from_secs(60), 3),
            key_work_per_site: keyed(Duration::from_secs(60), 20),
        }
    }

    /// Takes one call of `limiter` for `did`, or 429 with how long to wait.
    pub fn take(
        limiter: &governor::DefaultKeyedRateLimiter<String>,
        did: &str,
        what: &str,
    ) -> Result<(), ApiError> {
        use governor::clock::Clock;
        limiter.check_key(&did.to_string()).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            ApiError::TooMany {
                message: format!("too many {what} from this account; wait a little"),
                retry_after: wait.as_secs() + 1,
            }
        })
    }

    /// Takes one unit of key work for the client network of `peer`.
    pub fn take_key_work(&self, peer: std::net::IpAddr) -> Result<(), ApiError> {
        let site = crate::connections::ClientNet::site(peer).to_string();
        Self::take(
            &self.key_work_per_site,
            &site,
            "key requests from your network",
        )
    }

    /// Forgets DIDs idle long enough to be back at a full burst (the sweep).
    pub fn sweep(&self) {
        self.dns_checks.retain_recent();
        self.domain_adds.retain_recent();
        self.rotations.retain_recent();
        self.new_keys.retain_recent();
        self.key_work_per_site.retain_recent();
    }
}

impl Web {
    /// The web state.
    pub fn new(
        oauth: OAuthClient,
        identity: Arc<Resolver>,
        enrollment: Enrollment,
        settings: WebSettings,
    ) -> Self {
        Self {
            oauth,
            identity,
            enrollment,
            settings,
            refreshing: Mutex::new(HashMap::new()),
            signins: governor::RateLimiter::keyed(governor::Quota::per_minute(
                std::num::NonZeroU32::new(30).unwrap_or(std::num::NonZeroU32::MIN),
            )),
            per_did: PerDid::new(),
        }
    }

    /// Whether `did` may open `/admin`.
    pub fn is_operator(&self, did: &str) -> bool {
        self.settings.operator_dids.iter().any(|d| d == did)
    }
}

/// Forgets, on a timer, what strangers can make the relay remember without ever coming back:
/// idle sessions (with their sealed tokens), expired sign-ins, and the rate limiters' entries
/// for clients and DIDs back at a full burst (the labeler's issuers too). Runs every half
/// `session_idle`, between once a second and once a minute.
pub async fn sweep(state: Arc<AppState>, shutdown: tokio_util::sync::CancellationToken) {
    let every = (state.web.settings.session_idle / 2)
        .clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = now_ms();
        let idle_before = now - state.web.settings.session_idle.as_millis() as i64;
        let expired = now - crate::oauth::client::PENDING_TTL_S * 1000;
        let swept = state.store.write(|tx| {
            Ok((
                web_sessions::prune_sessions(tx, idle_before)?,
                web_sessions::expire_pending(tx, expired)?,
            ))
        });
        match swept {
            Ok((0, 0)) => {}
            Ok((idle, signins)) => {
                tracing::debug!(
                    idle,
                    signins,
                    "web: swept idle sessions and expired sign-ins"
                )
            }
            Err(e) => tracing::warn!(error = %e, "web: cannot sweep sessions"),
        }
        state.web.signins.retain_recent();
        state.web.per_did.sweep();
        if let Some(labeler) = &state.labeler {
            labeler.sweep();
        }
    }
}

/// SHA-256 hex of a browser token: what the store keys rows by.
pub fn token_hash(token: &str) -> String {
    base16ct::lower::encode_string(&Sha256::digest(token.as_bytes()))
}

/// A cookie's value from the request.
pub fn cookie(parts: &axum::http::HeaderMap, name: &str) -> Option<String> {
    parts
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| cookie::Cookie::split_parse(v.to_string()))
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

/// A `Set-Cookie` value; `max_age` 0 deletes.
pub fn set_cookie(name: &'static str, value: &str, max_age: Duration, secure: bool) -> String {
    cookie::Cookie::build((cookie_name(name, secure), value))
        .path("/")
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .secure(secure)
        .max_age(cookie::time::Duration::seconds(max_age.as_secs() as i64))
        .build()
        .to_string()
}

fn seal_context(id_hash: &str) -> Vec<u8> {
    format!("web session {id_hash}").into_bytes()
}

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub id_hash: String,
    pub did: String,
    pub handle: Option<String>,
    pub csrf: String,
    pub tokens: Tokens,
}

fn signed_out() -> ApiError {
    ApiError::coded(401, "SIGNED_OUT", "sign in first")
}

impl AppState {
    /// Creates a session for `tokens`; returns the cookie token.
    pub fn open_session(
        &self,
        tokens: &Tokens,
        handle: Option<String>,
    ) -> Result<String, ApiError> {
        let token = random_token(32);
        let id_hash = token_hash(&token);
        let sealed = self.seal_tokens(&id_hash, tokens)?;
        let now = now_ms();
        let row = web_sessions::SessionRow {
            did: tokens.sub.clone(),
            handle,
            csrf: random_token(24),
            sealed,
            created_at: now,
            last_used: now,
        };
        let per_member = self.web.settings.sessions_per_member;
        self.store
            .write(|tx| web_sessions::put_session(tx, &id_hash, &row, per_member))
            .map_err(|e| {
                tracing::error!(error = %e, "web: cannot store a session");
                ApiError::coded(500, "INTERNAL", "internal error")
            })?;
        Ok(token)
    }

    fn seal_tokens(&self, id_hash: &str, tokens: &Tokens) -> Result<Vec<u8>, ApiError> {
        let plain = serde_json::to_vec(tokens)
            .map_err(|_| ApiError::coded(500, "INTERNAL", "internal error"))?;
        self.secrets
            .seal(&plain, &seal_context(id_hash))
            .map_err(|e| {
                tracing::error!(error = %e, "web: cannot seal a session");
                ApiError::coded(500, "INTERNAL", "internal error")
            })
    }

    /// The session of the request's cookie, if it is live.
    pub fn session_of(
        &self,
        headers: &axum::http::HeaderMap,
    ) -> Result<Option<SignedIn>, ApiError> {
        let name = cookie_name(SESSION_COOKIE, self.web.settings.secure_cookies);
        let Some(token) = cookie(headers, &name) else {
            return Ok(None);
        };
        let id_hash = token_hash(&token);
        let idle_since = now_ms() - self.web.settings.session_idle.as_millis() as i64;
        let row = self
            .store
            .with(|c| web_sessions::session(c, &id_hash, idle_since))
            .map_err(|_| ApiError::coded(500, "INTERNAL", "internal error"))?;
        let Some(row) = row else { return Ok(None) };
        let Ok(plain) = self.secrets.open(&row.sealed, &seal_context(&id_hash)) else {
            return Ok(None);
        };
        let Ok(tokens) = serde_json::from_slice::<Tokens>(&plain) else {
            return Ok(None);
        };
        if now_ms() - row.last_used > 60_000 {
            let _ = self
                .store
                .write(|tx| web_sessions::touch(tx, &id_hash, now_ms(), None));
        }
        Ok(Some(SignedIn {
            id_hash,
            did: row.did,
            handle: row.handle,
            csrf: row.csrf,
            tokens,
        }))
    }

    /// Ends a session (and revokes its tokens at the authorization server).
    pub async fn close_session(&self, s: &SignedIn) {
        self.web.oauth.revoke(&s.tokens).await;
        let _ = self
            .store
            .write(|tx| web_sessions::delete_session(tx, &s.id_hash));
    }

    /// Fresh tokens for a session: refreshed when they expire within 30 s (or `force`), one
    /// refresh per session at a time, the new tokens stored before use.
    pub async fn fresh_tokens(&self, s: &SignedIn, force: bool) -> Result<Tokens, OAuthError> {
        let margin = self.web.settings.refresh_margin.as_secs() as i64;
        if !force && s.tokens.expires_at > now_s() + margin {
            return Ok(s.tokens.clone());
        }
        let gate = self
            .web
            .refreshing
            .lock()
            .map(|mut m| m.entry(s.id_hash.clone()).or_default().clone())
            .unwrap_or_default();
        let _turn = gate.lock().await;
        // The entry leaves the map however this ends, the caller going away included.
        let _forget = ForgetRefresh {
            web: &self.web,
            id_hash: &s.id_hash,
        };
        // Someone else may have refreshed while we waited: read the row again.
        let current = self
            .store
            .with(|c| web_sessions::session(c, &s.id_hash, 0))
            .ok()
            .flatten()
            .and_then(|row| {
                self.secrets
                    .open(&row.sealed, &seal_context(&s.id_hash))
                    .ok()
            })
            .and_then(|plain| serde_json::from_slice::<Tokens>(&plain).ok())
            .ok_or(OAuthError::SessionEnded)?;
        if current.access_token != s.tokens.access_token && current.expires_at > now_s() + margin {
            return Ok(current);
        }
        match self.web.oauth.refresh(&current).await {
            Ok(new) => {
                let sealed = self
                    .seal_tokens(&s.id_hash, &new)
                    .map_err(|_| OAuthError::SessionEnded)?;
                let _ = self
                    .store
                    .write(|tx| web_sessions::touch(tx, &s.id_hash, now_ms(), Some(&sealed)));
                tracing::info!(did = %s.did, "web: session tokens refreshed");
                Ok(new)
            }
            Err(e) => {
                if e == OAuthError::SessionEnded {
                    let _ = self
                        .store
                        .write(|tx| web_sessions::delete_session(tx, &s.id_hash));
                }
                Err(e)
            }
        }
    }
}

/// Drops a session's refresh gate from the map when its refresh ends.
struct ForgetRefresh<'a> {
    web: &'a Web,
    id_hash: &'a str,
}

impl Drop for ForgetRefresh<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.web.refreshing.lock() {
            m.remove(self.id_hash);
        }
    }
}

/// The signed-in browser of a request (401 `SIGNED_OUT` otherwise).
pub struct Session(pub SignedIn);

impl axum::extract::FromRequestParts<Arc<AppState>> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        state
            .session_of(&parts.headers)?
            .map(Session)
            .ok_or_else(signed_out)
    }
}

/// A signed-in browser whose request carries the session's CSRF token (403 `CSRF` otherwise):
/// for every request that changes state.
pub struct Changing(pub SignedIn);

impl axum::extract::FromRequestParts<Arc<AppState>> for Changing {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let s = state.session_of(&parts.headers)?.ok_or_else(signed_out)?;
        if !super::csrf::carries(parts, &s.csrf) {
            return Err(super::csrf::refused());
        }
        Ok(Changing(s))
    }
}

/// The member's repo through their session: putRecord and deleteRecord, refreshing the access
/// token once when the PDS says it expired.
pub struct SessionRepo {
    pub state: Arc<AppState>,
    pub session: SignedIn,
}

impl SessionRepo {
    /// The repo of `session`'s member, and that member's DID.
    pub fn of(state: &Arc<AppState>, session: SignedIn) -> (String, Self) {
        let did = session.did.clone();
        (
            did,
            Self {
                state: state.clone(),
                session,
            },
        )
    }

    async fn call(&self, nsid: &str, body: serde_json::Value) -> Result<serde_json::Value, String> {
        let mut tokens = self
            .state
            .fresh_tokens(&self.session, false)
            .await
            .map_err(|e| e.to_string())?;
        for attempt in 0..2 {
            let answer = self
                .state
                .web
                .oauth
                .pds_call(&tokens, "POST", nsid, &[], Some(&body))
                .await
                .map_err(|e| e.to_string())?;
            match answer.status {
                200..=299 => return Ok(answer.body),
                401 if attempt == 0 => {
                    tokens = self
                        .state
                        .fresh_tokens(&self.session, true)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                status => {
                    let why = answer.body["message"]
                        .as_str()
                        .or(answer.body["error"].as_str())
                        .unwrap_or("no reason given")
                        .chars()
                        .filter(|c| !c.is_control())
                        .take(300)
                        .collect::<String>();
                    return Err(format!("HTTP {status}: {why}"));
                }
            }
        }
        Err("the PDS refused the session".into())
    }
}

impl Repo for SessionRepo {
    fn put_record<'a>(
        &'a self,
        collection: &'a str,
        rkey: &'a str,
        record: serde_json::Value,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>> {
        Box::pin(async move {
            let body = serde_json::json!({
                "repo": self.session.did, "collection": collection, "rkey": rkey, "record": record,
            });
            let answer = self.call("com.atproto.repo.putRecord", body).await?;
            Ok(answer["uri"].as_str().unwrap_or_default().to_string())
        })
    }

    fn delete_record<'a>(
        &'a self,
        collection: &'a str,
        rkey: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            let body = serde_json::json!({ "repo": self.session.did, "collection": collection, "rkey": rkey });
            self.call("com.atproto.repo.deleteRecord", body)
                .await
                .map(|_| ())
        })
    }

    fn get_record<'a>(
        &'a self,
        collection: &'a str,
        rkey: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Option<serde_json::Value>, String>> + Send + 'a>> {
        Box::pin(async move {
            // Records are public: read without the session, through the guarded fetcher.
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let url = format!(
                "{}/xrpc/com.atproto.repo.getRecord?repo={}&collection={}&rkey={}",
                self.session.tokens.pds.trim_end_matches('/'),
                enc(&self.session.did),
                enc(collection),
                enc(rkey)
            );
            match self
                .state
                .web
                .identity
                .fetcher()
                .get_json::<serde_json::Value>(&url)
                .await
            {
                Ok(v) => Ok(Some(v["value"].clone())),
                // The PDS answers a missing record 400 RecordNotFound (404 on some versions).
                Err(crate::identity::fetch::FetchError::Status {
                    status: 400 | 404, ..
                }) => Ok(None),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_did_limits_refuse_with_a_wait_and_the_sweep_forgets_idle_dids() {
        let limits = PerDid::new();
        for _ in 0..2 {
            PerDid::take(&limits.rotations, "did:plc:a", "re-enrollments").expect("burst of 2");
        }
        match PerDid::take(&limits.rotations, "did:plc:a", "re-enrollments") {
            Err(ApiError::TooMany { retry_after, .. }) => {
                assert!((1..=61).contains(&retry_after), "{retry_after}")
            }
            other => panic!("the third rotation in a minute: {other:?}"),
        }
        PerDid::take(&limits.rotations, "did:plc:b", "re-enrollments").expect("another DID");
        // One DNS check costs a second of its 20-call burst; once it is back, the sweep forgets
        // the DID (the map of a limiter anyone can add keys to does not only grow).
        PerDid::take(&limits.dns_checks, "did:plc:a", "DNS checks").expect("a check");
        assert_eq!(limits.dns_checks.len(), 1);
        limits.sweep();
        assert_eq!(limits.dns_checks.len(), 1, "not back to a full burst yet");
        // governor forgets a key one period after it is back at a full burst.
        std::thread::sleep(Duration::from_millis(2100));
        limits.sweep();
        assert_eq!(limits.dns_checks.len(), 0);
        assert_eq!(
            limits.rotations.len(),
            2,
            "rotations are still counting down"
        );
    }
}
