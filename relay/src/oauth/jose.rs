//! The little JOSE atproto OAuth needs: ES256 (P-256) keys as JWKs, their RFC 7638 thumbprints,
//! and compact JWS signing. The cryptography is p256's; this module only frames it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use sha2::{Digest, Sha256};

/// An ES256 key pair (DPoP keys, the confidential client's assertion keys).
#[derive(Clone)]
pub struct EsKey(SigningKey);

impl std::fmt::Debug for EsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EsKey({})", self.thumbprint())
    }
}

impl EsKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        loop {
            rand::fill(&mut bytes);
            if let Ok(k) = SigningKey::from_slice(&bytes) {
                return Self(k);
            }
        }
    }

    /// The key from its 32-byte scalar (as stored, sealed).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        SigningKey::from_slice(bytes).ok().map(Self)
    }

    /// The 32-byte scalar (to seal; never log it).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.to_bytes().to_vec()
    }

    fn coordinates(&self) -> (String, String) {
        let point = self.0.verifying_key().to_encoded_point(false);
        let x = point.x().map(|x| B64.encode(x)).unwrap_or_default();
        let y = point.y().map(|y| B64.encode(y)).unwrap_or_default();
        (x, y)
    }

    /// The public JWK; `kid` when the key is published in a JWKS.
    pub fn public_jwk(&self, kid: Option<&str>) -> serde_json::Value {
        let (x, y) = self.coordinates();
        let mut jwk = serde_json::json!({ "kty": "EC", "crv": "P-256", "x": x, "y": y });
        if let Some(kid) = kid {
            jwk["kid"] = kid.into();
            jwk["use"] = "sig".into();
            jwk["alg"] = "ES256".into();
        }
        jwk
    }

    /// The RFC 7638 thumbprint of the public key (base64url SHA-256 of the canonical members).
    pub fn thumbprint(&self) -> String {
        let (x, y) = self.coordinates();
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        B64.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// A compact JWS of `claims` with `header` (`alg` is set to ES256).
    pub fn sign(&self, mut header: serde_json::Value, claims: &serde_json::Value) -> String {
        header["alg"] = "ES256".into();
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig: Signature = self.0.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(sig.to_bytes()))
    }
}

/// base64url(SHA-256(`text`)): PKCE S256 challenges and DPoP `ath`.
pub fn sha256_b64(text: &str) -> String {
    B64.encode(Sha256::digest(text.as_bytes()))
}

/// `n` random bytes, base64url: states, verifiers, jtis, session tokens.
pub fn random_token(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::fill(bytes.as_mut_slice());
    B64.encode(bytes)
}

/// Seconds since the epoch.
pub fn now_s() -> i64 {
    crate::store::now_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;

    #[test]
    fn signs_verifiable_jws_and_thumbprints_per_rfc_7638() {
        let key = EsKey::generate();
        let jws = key.sign(
            serde_json::json!({"typ": "dpop+jwt"}),
            &serde_json::json!({"a": 1}),
        );
        let parts: Vec<&str> = jws.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        let sig = Signature::from_slice(&B64.decode(parts[2]).unwrap()).unwrap();
        key.0
            .verifying_key()
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .expect("verifies");
        let back = EsKey::from_bytes(&key.to_bytes()).unwrap();
        assert_eq!(back.thumbprint(), key.thumbprint());
        assert_eq!(key.thumbprint().len(), 43);
        let jwk = key.public_jwk(Some("k1"));
        assert_eq!(
            (jwk["kid"].as_str(), jwk["crv"].as_str()),
            (Some("k1"), Some("P-256"))
        );
        assert!(jwk.get("d").is_none(), "never the private part");
        // PKCE S256 per RFC 7636 appendix B.
        assert_eq!(
            sha256_b64("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
