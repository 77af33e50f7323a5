//! The labeler's identity: its DID (did:web by default), the Multikey form of its public key and
//! the DID document served at `/.well-known/did.json`. Also decodes the keys of other DIDs for
//! service-auth checks.

/// Multicodec prefix of a compressed secp256k1 public key.
const SECP256K1_PUB: [u8; 2] = [0xe7, 0x01];
/// Multicodec prefix of a compressed P-256 public key.
const P256_PUB: [u8; 2] = [0x80, 0x24];

/// A public key another DID signs with.
#[derive(Debug, Clone)]
pub enum PublicKey {
    K256(k256::ecdsa::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
}

/// `did:web:<host>`; a port is percent-encoded as the did:web method requires.
pub fn did_web(hostname: &str) -> String {
    format!("did:web:{}", hostname.replace(':', "%3A"))
}

/// Multibase (base58btc, `z`) Multikey of a secp256k1 key, as in DID documents.
pub fn multikey(key: &k256::ecdsa::VerifyingKey) -> String {
    let point = key.to_encoded_point(true);
    let mut bytes = SECP256K1_PUB.to_vec();
    bytes.extend_from_slice(point.as_bytes());
    format!("z{}", bs58::encode(bytes).into_string())
}

/// Parses a `publicKeyMultibase` (Multikey) or a `did:key:` value.
pub fn parse_multikey(value: &str) -> Option<PublicKey> {
    let value = value.strip_prefix("did:key:").unwrap_or(value);
    let bytes = bs58::decode(value.strip_prefix('z')?).into_vec().ok()?;
    let (prefix, key) = bytes.split_at_checked(2)?;
    if prefix == SECP256K1_PUB {
        k256::ecdsa::VerifyingKey::from_sec1_bytes(key)
            .ok()
            .map(PublicKey::K256)
    } else if prefix == P256_PUB {
        p256::ecdsa::VerifyingKey::from_sec1_bytes(key)
            .ok()
            .map(PublicKey::P256)
    } else {
        None
    }
}

/// The labeler's DID document: `#atproto_label` Multikey and `#atproto_labeler` service.
pub fn did_document(
    did: &str,
    key: &k256::ecdsa::VerifyingKey,
    endpoint: &str,
) -> serde_json::Value {
    serde_json::json!({
        "@context": [
            "https://www.w3.org/ns/did/v1",
            "https://w3id.org/security/multikey/v1",
            "https://w3id.org/security/suites/secp256k1-2019/v1"
        ],
        "id": did,
        "verificationMethod": [{
            "id": format!("{did}#atproto_label"),
            "type": "Multikey",
            "controller": did,
            "publicKeyMultibase": multikey(key),
        }],
        "service": [{
            "id": "#atproto_labeler",
            "type": "AtprotoLabeler",
            "serviceEndpoint": endpoint,
        }],
    })
}

/// The key with fragment `fragment` (e.g. `atproto`) in a DID document.
pub fn key_from_document(doc: &serde_json::Value, fragment: &str) -> Option<PublicKey> {
    let did = doc.get("id")?.as_str()?;
    let full = format!("{did}#{fragment}");
    let short = format!("#{fragment}");
    doc.get("verificationMethod")?
        .as_array()?
        .iter()
        .find(|m| {
            m.get("id")
                .and_then(|v| v.as_str())
                .is_some_and(|id| id == full || id == short)
        })
        .and_then(|m| {
            let value = m.get("publicKeyMultibase")?.as_str()?;
            match m.get("type").and_then(|t| t.as_str()) {
                // Legacy forms (still what the PLC directory serves): raw SEC1 bytes, no codec.
                Some("EcdsaSecp256k1VerificationKey2019") => {
                    let raw = bs58::decode(value.strip_prefix('z')?).into_vec().ok()?;
                    k256::ecdsa::VerifyingKey::from_sec1_bytes(&raw)
                        .ok()
                        .map(PublicKey::K256)
                }
                Some("EcdsaSecp256r1VerificationKey2019") => {
                    let raw = bs58::decode(value.strip_prefix('z')?).into_vec().ok()?;
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(&raw)
                        .ok()
                        .map(PublicKey::P256)
                }
                _ => parse_multikey(value),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multikey_round_trips_and_matches_the_atproto_prefix() {
        let sk = k256::ecdsa::SigningKey::from_slice(&[9u8; 32]).expect("scalar");
        let mk = multikey(sk.verifying_key());
        // Every compressed secp256k1 Multikey starts with zQ3s.
        assert!(mk.starts_with("zQ3s"), "{mk}");
        match parse_multikey(&mk) {
            Some(PublicKey::K256(k)) => assert_eq!(&k, sk.verifying_key()),
            other => panic!("wrong key: {other:?}"),
        }
        let doc = did_document("did:web:l.test", sk.verifying_key(), "https://l.test");
        assert!(key_from_document(&doc, "atproto_label").is_some());
        assert!(key_from_document(&doc, "atproto").is_none());
        assert!(parse_multikey("zQ3sNotBase58!").is_none());
        // The PLC directory's legacy form: uncompressed SEC1 bytes, no multicodec prefix.
        let legacy = serde_json::json!({
            "id": "did:plc:x",
            "verificationMethod": [{
                "id": "#atproto",
                "type": "EcdsaSecp256k1VerificationKey2019",
                "publicKeyMultibase": format!("z{}", bs58::encode(sk.verifying_key().to_encoded_point(false).as_bytes()).into_string()),
            }],
        });
        match key_from_document(&legacy, "atproto") {
            Some(PublicKey::K256(k)) => assert_eq!(&k, sk.verifying_key()),
            other => panic!("wrong key: {other:?}"),
        }
    }

    #[test]
    fn did_web_encodes_ports() {
        assert_eq!(did_web("relay.test"), "did:web:relay.test");
        assert_eq!(did_web("localhost:8080"), "did:web:localhost%3A8080");
    }
}
