//! Inter-service auth (atproto "service auth"): a JWT signed by the caller's `#atproto` key,
//! found in its DID document (PLC directory or did:web). Checks `aud`, `lxm`, `exp` and that the
//! `jti` is used once.

use crate::identity::{self, PublicKey};
use atmos_lexicons::did::Did;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Longest lifetime accepted for a token (atproto clients ask for ≤ 60 s by default; PDSes cap
/// service tokens at one hour).
const MAX_LIFETIME_S: i64 = 3600;

/// Why a token was refused; `name` is the XRPC error name.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {message}")]
pub struct AuthError {
    pub name: &'static str,
    pub message: String,
}

fn err(name: &'static str, message: impl Into<String>) -> AuthError {
    AuthError {
        name,
        message: message.into(),
    }
}

/// The claims this service reads.
#[derive(Debug, serde::Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub exp: i64,
    #[serde(default)]
    pub lxm: Option<String>,
    #[serde(default)]
    pub jti: Option<String>,
}

#[derive(serde::Deserialize)]
struct Header {
    alg: String,
}

/// Largest DID document read from the network.
const MAX_DOCUMENT: usize = 64 * 1024;
/// Longest token accepted (real ones are under 1 KiB).
const MAX_TOKEN: usize = 4096;
/// Longest `jti`.
const MAX_JTI: usize = 256;

/// Where DID documents come from. The relay gives the labeler its own identity resolver (one
/// resolver, one PLC setting, one guarded HTTP client for both); [`HttpDocuments`] stands alone.
pub trait DidDocuments: Send + Sync {
    /// The DID document of `did`; the error text goes to the log only.
    fn document<'a>(
        &'a self,
        did: &'a Did,
    ) -> Pin<Box<dyn Future<Output = Result<serde_json::Value, String>> + Send + 'a>>;
}

/// DID documents over HTTP without redirects, in 5 s, at most 64 KiB (for a labeler on its own
/// and its tests).
pub struct HttpDocuments {
    http: reqwest::Client,
    plc_url: String,
}

impl HttpDocuments {
    /// Documents from the PLC directory at `plc_url` and from did:web hosts.
    pub fn new(plc_url: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap_or_default();
        Self {
            http,
            plc_url: plc_url.trim_end_matches('/').to_string(),
        }
    }
}

impl DidDocuments for HttpDocuments {
    fn document<'a>(
        &'a self,
        did: &'a Did,
    ) -> Pin<Box<dyn Future<Output = Result<serde_json::Value, String>> + Send + 'a>> {
        Box::pin(async move {
            let url = match atmos_lexicons::did::web_host(did) {
                Some(host) => format!("{}/.well-known/did.json", host.origin()),
                None => format!("{}/{}", self.plc_url, did.as_str()),
            };
            let mut res = self
                .http
                .get(&url)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !res.status().is_success() {
                return Err(format!("HTTP {}", res.status()));
            }
            if res
                .content_length()
                .is_some_and(|n| n > MAX_DOCUMENT as u64)
            {
                return Err("document too large".into());
            }
            let mut body = Vec::new();
            while let Some(chunk) = res.chunk().await.map_err(|e| e.to_string())? {
                if body.len() + chunk.len() > MAX_DOCUMENT {
                    return Err("document too large".into());
                }
                body.extend_from_slice(&chunk);
            }
            serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))
        })
    }
}

/// Resolves service-auth issuers and meters what they may do. Issuers cost an attacker
/// nothing (`did:web:<n>.attacker.example` under one wildcard), so:
/// - documents are cached five minutes, and fetched at most 30 times a minute per site: forged
///   tokens naming a victim make no fetches and use up none of the victim's quota;
/// - reports are counted only once a token's signature verified: 10 a minute per issuer, 20 per
///   did:web site (the host's last two labels), and a cap for everyone together.
pub struct DidResolver {
    documents: std::sync::Arc<dyn DidDocuments>,
    cache: std::sync::Mutex<
        std::collections::HashMap<String, (std::time::Instant, serde_json::Value)>,
    >,
    fetches: governor::DefaultKeyedRateLimiter<String>,
    plc_fetches: governor::DefaultDirectRateLimiter,
    per_issuer: governor::DefaultKeyedRateLimiter<String>,
    per_site: governor::DefaultKeyedRateLimiter<String>,
    everyone: governor::DefaultDirectRateLimiter,
}

/// The message callers see when an issuer cannot be checked; the detail goes to the log.
const UNRESOLVED: &str = "the token's issuer could not be verified";
/// How long a fetched DID document is reused.
const DOCUMENT_TTL: Duration = Duration::from_secs(300);
/// Documents kept at most (the cache starts over when full).
const MAX_CACHED: usize = 10_000;

fn per_minute(n: u32) -> governor::Quota {
    governor::Quota::per_minute(std::num::NonZeroU32::new(n).unwrap_or(std::num::NonZeroU32::MIN))
}

/// What an issuer's reports and fetches are counted under besides itself: a did:web's site
/// (its host's last two labels: every `<n>.attacker.example` is one site), or the PLC
/// directory.
fn site_of(did: &Did) -> String {
    match atmos_lexicons::did::web_host(did) {
        Some(host) => {
            let name = host.host.to_ascii_lowercase();
            let labels: Vec<&str> = name.rsplit('.').take(2).collect();
            labels.into_iter().rev().collect::<Vec<_>>().join(".")
        }
        None => "plc".to_string(),
    }
}

impl DidResolver {
    /// A resolver over `documents`, accepting `reports_per_minute` reports from everyone.
    pub fn new(documents: std::sync::Arc<dyn DidDocuments>, reports_per_minute: u32) -> Self {
        Self {
            documents,
            cache: std::sync::Mutex::new(std::collections::HashMap::new()),
            fetches: governor::RateLimiter::keyed(per_minute(30)),
            plc_fetches: governor::RateLimiter::direct(per_minute(120)),
            per_issuer: governor::RateLimiter::keyed(per_minute(10)),
            per_site: governor::RateLimiter::keyed(per_minute(20)),
            everyone: governor::RateLimiter::direct(per_minute(reports_per_minute)),
        }
    }

    /// The DID document of `did` (did:plc or did:web), from the cache or fetched.
    pub async fn document(&self, did: &Did) -> Result<serde_json::Value, AuthError> {
        if let Some(doc) = self.cached(did) {
            return Ok(doc);
        }
        let site = site_of(did);
        // did:plc documents come from the operator's directory, shared by every issuer.
        let fetch_allowed = if site == "plc" {
            self.plc_fetches.check().is_ok()
        } else {
            self.fetches.check_key(&site).is_ok()
        };
        if !fetch_allowed {
            return Err(err(
                "RateLimitExceeded",
                "too many issuers from this site, try later",
            ));
        }
        let doc = self.documents.document(did).await.map_err(|detail| {
            tracing::info!(did = did.as_str(), %detail, "service auth: cannot resolve the issuer");
            err("InvalidToken", UNRESOLVED)
        })?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(
                did.as_str().to_string(),
                (std::time::Instant::now(), doc.clone()),
            );
        }
        Ok(doc)
    }

    fn cached(&self, did: &Did) -> Option<serde_json::Value> {
        let cache = self.cache.lock().ok()?;
        let (at, doc) = cache.get(did.as_str())?;
        (at.elapsed() < DOCUMENT_TTL).then(|| doc.clone())
    }

    /// Counts one report from a verified `issuer`: refused when the issuer, its site or
    /// everyone together is over their rate.
    pub fn charge_report(&self, issuer: &Did) -> Result<(), AuthError> {
        let too_many = |whom: &str| {
            err(
                "RateLimitExceeded",
                format!("too many reports from {whom}, try later"),
            )
        };
        if self
            .per_issuer
            .check_key(&issuer.as_str().to_string())
            .is_err()
        {
            return Err(too_many("this issuer"));
        }
        let site = site_of(issuer);
        if site != "plc" && self.per_site.check_key(&site).is_err() {
            return Err(too_many("this site"));
        }
        if self.everyone.check().is_err() {
            return Err(too_many("everyone just now"));
        }
        Ok(())
    }

    /// Forgets rate state back at full burst and expired documents.
    pub fn sweep(&self) {
        self.fetches.retain_recent();
        self.per_issuer.retain_recent();
        self.per_site.retain_recent();
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|_, (at, _)| at.elapsed() < DOCUMENT_TTL);
        }
    }

    /// Issuers, sites and cached documents held now (for tests of the sweep).
    pub fn remembered(&self) -> usize {
        self.per_issuer.len()
            + self.per_site.len()
            + self.fetches.len()
            + self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }
}

fn decode_part(part: &str) -> Result<Vec<u8>, AuthError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| err("BadJwt", "token is not base64url"))
}

/// Checks a service-auth token; returns the claims (the caller's DID is `iss`).
/// Everything that can be checked without the network is checked first; `use_jti` records an
/// (issuer, token id) pair and says whether it was fresh.
pub async fn verify(
    token: &str,
    audience: &str,
    lxm: &str,
    resolver: &DidResolver,
    now_s: i64,
    // Charges the verified issuer's quota (after its token id is spent).
    admit: impl FnOnce(&Did) -> Result<(), AuthError>,
    use_jti: impl FnOnce(&str, &str, i64) -> Result<bool, String>,
) -> Result<Claims, AuthError> {
    if token.len() > MAX_TOKEN {
        return Err(err("BadJwt", "token is too long"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(err("BadJwt", "token must have three parts"));
    };
    let header: Header = serde_json::from_slice(&decode_part(h)?)
        .map_err(|_| err("BadJwt", "unreadable JWT header"))?;
    if !matches!(header.alg.as_str(), "ES256K" | "ES256") {
        return Err(err("BadJwt", "alg must be ES256K or ES256"));
    }
    let claims: Claims = serde_json::from_slice(&decode_part(p)?)
        .map_err(|_| err("BadJwt", "JWT payload lacks iss, aud or exp"))?;
    let sig = decode_part(s)?;
    if sig.len() != 64 {
        return Err(err("BadJwtSignature", "signature must be 64 bytes"));
    }
    let issuer = atmos_lexicons::did::parse(claims.iss.split('#').next().unwrap_or_default())
        .map_err(|e| err("BadJwt", format!("iss {e}")))?;
    if claims.aud != audience {
        return Err(err("BadJwtAudience", format!("aud must be {audience}")));
    }
    if claims.exp <= now_s {
        return Err(err("JwtExpired", "token has expired"));
    }
    if claims.exp > now_s + MAX_LIFETIME_S {
        return Err(err("BadJwt", "token lifetime is too long"));
    }
    if claims.lxm.as_deref() != Some(lxm) {
        return Err(err("BadJwtLexiconMethod", format!("lxm must be {lxm}")));
    }
    let Some(jti) = claims
        .jti
        .as_deref()
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI)
    else {
        return Err(err(
            "BadJwt",
            "token has no jti, or one over 256 characters",
        ));
    };
    let doc = resolver.document(&issuer).await?;
    let key = identity::key_from_document(&doc, "atproto")
        .ok_or_else(|| err("BadJwtSignature", "the issuer has no #atproto key"))?;
    let signed = &token[..h.len() + 1 + p.len()];
    let ok = match (&key, header.alg.as_str()) {
        (PublicKey::K256(k), "ES256K") => {
            use k256::ecdsa::signature::Verifier;
            k256::ecdsa::Signature::from_slice(&sig)
                .is_ok_and(|sig| k.verify(signed.as_bytes(), &sig).is_ok())
        }
        (PublicKey::P256(k), "ES256") => {
            use p256::ecdsa::signature::Verifier;
            p256::ecdsa::Signature::from_slice(&sig)
                .is_ok_and(|sig| k.verify(signed.as_bytes(), &sig).is_ok())
        }
        _ => false,
    };
    if !ok {
        return Err(err(
            "BadJwtSignature",
            "signature does not verify with the issuer's key",
        ));
    }
    // Only a verified token may burn its id, or anyone could block a jti in advance.
    match use_jti(issuer.as_str(), jti, claims.exp) {
        // The issuer's quota is charged last: a forged token (no signature) or a replayed one
        // (its id spent) never uses it up. A token refused here stays spent; the client asks
        // its PDS for another.
        Ok(true) => admit(&issuer).map(|()| claims),
        Ok(false) => Err(err("BadJwt", "token was already used")),
        Err(e) => {
            tracing::error!(error = %e, "service auth: cannot record the token id");
            Err(err("InternalServerError", "internal error"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_malformed_and_misaddressed_tokens_before_resolving() {
        let r = DidResolver::new(
            std::sync::Arc::new(HttpDocuments::new("http://127.0.0.1:9")),
            60,
        );
        let enc = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let h = enc(serde_json::json!({"alg": "ES256K"}));
        let sig64 = URL_SAFE_NO_PAD.encode([7u8; 64]);
        let tok = |p: serde_json::Value| format!("{h}.{}.{sig64}", enc(p));
        let never =
            |_: &str, _: &str, _: i64| -> Result<bool, String> { panic!("jti must not be used") };
        let e = verify("a.b", "did:web:l", "m", &r, 100, |_| Ok(()), never)
            .await
            .unwrap_err();
        assert_eq!(e.name, "BadJwt");
        let plc = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
        // Nothing reaches the network for a bad issuer, alg or signature size.
        for (iss, name) in [
            ("did:web:127.0.0.1", "BadJwt"),
            ("did:web:evil.test:8080", "BadJwt"),
            ("did:key:z6Mk", "BadJwt"),
        ] {
            let p = serde_json::json!({"iss": iss, "aud": "did:web:l", "exp": 200, "lxm": "m", "jti": "j"});
            assert_eq!(
                verify(&tok(p), "did:web:l", "m", &r, 100, |_| Ok(()), never)
                    .await
                    .unwrap_err()
                    .name,
                name,
                "{iss}"
            );
        }
        let none_alg = format!(
            "{}.{}.{sig64}",
            enc(serde_json::json!({"alg": "none"})),
            enc(serde_json::json!({"iss": plc}))
        );
        assert_eq!(
            verify(&none_alg, "did:web:l", "m", &r, 100, |_| Ok(()), never)
                .await
                .unwrap_err()
                .name,
            "BadJwt"
        );
        let short_sig = format!(
            "{h}.{}.c2ln",
            enc(
                serde_json::json!({"iss": plc, "aud": "did:web:l", "exp": 200, "lxm": "m", "jti": "j"})
            )
        );
        assert_eq!(
            verify(&short_sig, "did:web:l", "m", &r, 100, |_| Ok(()), never)
                .await
                .unwrap_err()
                .name,
            "BadJwtSignature"
        );
        let p = serde_json::json!({"iss": plc, "aud": "did:web:other", "exp": 200, "lxm": "m", "jti": "j"});
        let e = verify(&tok(p), "did:web:l", "m", &r, 100, |_| Ok(()), never)
            .await
            .unwrap_err();
        assert_eq!(e.name, "BadJwtAudience");
        let p =
            serde_json::json!({"iss": plc, "aud": "did:web:l", "exp": 50, "lxm": "m", "jti": "j"});
        let e = verify(&tok(p), "did:web:l", "m", &r, 100, |_| Ok(()), never)
            .await
            .unwrap_err();
        assert_eq!(e.name, "JwtExpired");
        let p = serde_json::json!({"iss": plc, "aud": "did:web:l", "exp": 200, "lxm": "other", "jti": "j"});
        let e = verify(&tok(p), "did:web:l", "m", &r, 100, |_| Ok(()), never)
            .await
            .unwrap_err();
        assert_eq!(e.name, "BadJwtLexiconMethod");
    }
}
