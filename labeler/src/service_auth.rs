//! Inter-service auth (atproto "service auth"): a JWT signed by the caller's `#atproto` key,
//! found in its DID document (PLC directory or did:web). Checks `aud`, `lxm`, `exp` and that the
//! `jti` is used once.

use crate::identity::{self, PublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
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

/// Fetches DID documents.
pub struct DidResolver {
    http: reqwest::Client,
    plc_url: String,
}

impl DidResolver {
    /// A resolver using the PLC directory at `plc_url`.
    pub fn new(plc_url: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            http,
            plc_url: plc_url.trim_end_matches('/').to_string(),
        }
    }

    /// The DID document of `did` (did:plc or did:web).
    pub async fn document(&self, did: &str) -> Result<serde_json::Value, AuthError> {
        let url = if did.starts_with("did:plc:") {
            format!("{}/{}", self.plc_url, did)
        } else if let Some(host) = did.strip_prefix("did:web:") {
            if host.contains(':') {
                return Err(err("InvalidToken", "did:web with a path is not supported"));
            }
            format!("https://{}/.well-known/did.json", host.replace("%3A", ":"))
        } else {
            return Err(err(
                "InvalidToken",
                format!("unsupported DID method: {did}"),
            ));
        };
        let res = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| err("InvalidToken", format!("cannot resolve {did}: {e}")))?;
        if !res.status().is_success() {
            return Err(err(
                "InvalidToken",
                format!("cannot resolve {did}: HTTP {}", res.status()),
            ));
        }
        res.json()
            .await
            .map_err(|e| err("InvalidToken", format!("DID document of {did}: {e}")))
    }
}

fn decode_part(part: &str) -> Result<Vec<u8>, AuthError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| err("BadJwt", "token is not base64url"))
}

/// Checks a service-auth token; returns the claims (the caller's DID is `iss`).
/// `use_jti` records a token id and says whether it was fresh.
pub async fn verify(
    token: &str,
    audience: &str,
    lxm: &str,
    resolver: &DidResolver,
    now_s: i64,
    use_jti: impl FnOnce(&str, i64) -> Result<bool, String>,
) -> Result<Claims, AuthError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(err("BadJwt", "token must have three parts"));
    };
    let header: Header = serde_json::from_slice(&decode_part(h)?)
        .map_err(|_| err("BadJwt", "unreadable JWT header"))?;
    let claims: Claims = serde_json::from_slice(&decode_part(p)?)
        .map_err(|_| err("BadJwt", "JWT payload lacks iss, aud or exp"))?;
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
    let Some(jti) = claims.jti.as_deref() else {
        return Err(err("BadJwt", "token has no jti"));
    };
    let did = claims.iss.split('#').next().unwrap_or_default();
    let doc = resolver.document(did).await?;
    let key = identity::key_from_document(&doc, "atproto")
        .ok_or_else(|| err("BadJwtSignature", format!("{did} has no #atproto key")))?;
    let signed = &token[..h.len() + 1 + p.len()];
    let sig = decode_part(s)?;
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
    match use_jti(jti, claims.exp) {
        Ok(true) => Ok(claims),
        Ok(false) => Err(err("BadJwt", "token was already used")),
        Err(e) => Err(err("InternalServerError", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_malformed_and_misaddressed_tokens_before_resolving() {
        let r = DidResolver::new("http://127.0.0.1:9");
        let enc = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let h = enc(serde_json::json!({"alg": "ES256K"}));
        let tok = |p: serde_json::Value| format!("{h}.{}.c2ln", enc(p));
        let never = |_: &str, _: i64| -> Result<bool, String> { panic!("jti must not be used") };
        let e = verify("a.b", "did:web:l", "m", &r, 100, never)
            .await
            .unwrap_err();
        assert_eq!(e.name, "BadJwt");
        let p = serde_json::json!({"iss": "did:plc:x", "aud": "did:web:other", "exp": 200, "lxm": "m", "jti": "j"});
        let e = verify(&tok(p), "did:web:l", "m", &r, 100, never)
            .await
            .unwrap_err();
        assert_eq!(e.name, "BadJwtAudience");
        let p = serde_json::json!({"iss": "did:plc:x", "aud": "did:web:l", "exp": 50, "lxm": "m", "jti": "j"});
        let e = verify(&tok(p), "did:web:l", "m", &r, 100, never)
            .await
            .unwrap_err();
        assert_eq!(e.name, "JwtExpired");
        let p = serde_json::json!({"iss": "did:plc:x", "aud": "did:web:l", "exp": 200, "lxm": "other", "jti": "j"});
        let e = verify(&tok(p), "did:web:l", "m", &r, 100, never)
            .await
            .unwrap_err();
        assert_eq!(e.name, "BadJwtLexiconMethod");
    }
}
