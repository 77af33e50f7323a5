//! DPoP (RFC 9449): a fresh proof per request, signed with the session's key, and the server
//! nonces atproto requires — learned from every `DPoP-Nonce` header, and on a `use_dpop_nonce`
//! refusal (a 400 with that error from the authorization server, or a 401 with it in
//! `WWW-Authenticate` from the PDS) the request is sent once more with the new nonce.

use super::jose::{EsKey, now_s, random_token, sha256_b64};
use std::collections::HashMap;
use std::sync::Mutex;

/// The last nonce each origin gave.
#[derive(Default)]
pub struct Nonces(Mutex<HashMap<String, String>>);

impl Nonces {
    /// The nonce `origin` gave last.
    pub fn get(&self, origin: &str) -> Option<String> {
        self.0.lock().ok()?.get(origin).cloned()
    }

    /// Keeps the nonce `origin` gave (when it looks like one).
    pub fn set(&self, origin: &str, nonce: &str) {
        if let Ok(mut m) = self.0.lock() {
            if m.len() > 10_000 {
                m.clear();
            }
            // Nonces are short opaque tokens; anything else is not kept.
            if nonce.len() <= 256 && nonce.bytes().all(|b| b.is_ascii_graphic()) {
                m.insert(origin.to_string(), nonce.to_string());
            }
        }
    }
}

/// A DPoP proof for `method` on `url` (query and fragment dropped, RFC 9449 §4.2); `access_token`
/// adds the `ath` hash for resource requests.
pub fn proof(
    key: &EsKey,
    method: &str,
    url: &str,
    nonce: Option<&str>,
    access_token: Option<&str>,
) -> String {
    let htu = url.split(['?', '#']).next().unwrap_or(url);
    let mut claims = serde_json::json!({
        "jti": random_token(16),
        "htm": method,
        "htu": htu,
        "iat": now_s(),
    });
    if let Some(n) = nonce {
        claims["nonce"] = n.into();
    }
    if let Some(t) = access_token {
        claims["ath"] = sha256_b64(t).into();
    }
    key.sign(
        serde_json::json!({ "typ": "dpop+jwt", "jwk": key.public_jwk(None) }),
        &claims,
    )
}

/// Whether a response asks for a (new) nonce.
pub fn wants_nonce(status: u16, www_authenticate: Option<&str>, body: &[u8]) -> bool {
    match status {
        400 => serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["error"].as_str().map(|e| e == "use_dpop_nonce"))
            .unwrap_or(false),
        401 => www_authenticate.is_some_and(|h| h.contains("use_dpop_nonce")),
        _ => false,
    }
}

/// A response read whole (bounded by the caller's fetcher).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub www_authenticate: Option<String>,
    pub body: Vec<u8>,
}

/// Sends the request `build` makes (given a DPoP proof) with the origin's nonce, retrying once
/// when the server asks for a new one.
pub async fn send(
    nonces: &Nonces,
    key: &EsKey,
    method: &str,
    url: &str,
    access_token: Option<&str>,
    build: impl Fn(String) -> reqwest::RequestBuilder,
) -> Result<Answer, String> {
    let origin = super::discovery::origin(url).unwrap_or_default();
    let mut last = None;
    for _ in 0..2 {
        let nonce = nonces.get(&origin);
        let res = build(proof(key, method, url, nonce.as_deref(), access_token))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if let Some(n) = res
            .headers()
            .get("dpop-nonce")
            .and_then(|v| v.to_str().ok())
        {
            nonces.set(&origin, n);
        }
        let status = res.status().as_u16();
        let www_authenticate = res
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = crate::identity::fetch::read_capped(res, url)
            .await
            .map_err(|e| e.to_string())?;
        let retry =
            wants_nonce(status, www_authenticate.as_deref(), &body) && nonces.get(&origin) != nonce;
        let answer = Answer {
            status,
            www_authenticate,
            body,
        };
        if !retry {
            return Ok(answer);
        }
        last = Some(answer);
    }
    last.ok_or_else(|| "no answer".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn proofs_and_nonce_requests() {
        let key = EsKey::generate();
        let p = proof(
            &key,
            "POST",
            "https://as.example/token?x=1#f",
            Some("n1"),
            Some("tok"),
        );
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["htu"], "https://as.example/token");
        assert_eq!(
            (claims["htm"].as_str(), claims["nonce"].as_str()),
            (Some("POST"), Some("n1"))
        );
        assert_eq!(claims["ath"], sha256_b64("tok"));
        assert!(wants_nonce(400, None, br#"{"error":"use_dpop_nonce"}"#));
        assert!(wants_nonce(
            401,
            Some(r#"DPoP error="use_dpop_nonce", error_description="x""#),
            b""
        ));
        assert!(!wants_nonce(
            401,
            Some(r#"DPoP error="invalid_token""#),
            b""
        ));
        assert!(!wants_nonce(400, None, br#"{"error":"invalid_grant"}"#));
        let n = Nonces::default();
        n.set("https://a", "ok-nonce");
        n.set("https://b", "bad\\nnonce with spaces");
        assert_eq!(n.get("https://a").as_deref(), Some("ok-nonce"));
        assert_eq!(n.get("https://b"), None);
    }
}
