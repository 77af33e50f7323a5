//! The atproto label: its DAG-CBOR signing form, its secp256k1 signature and its JSON wire form.
//! Wire details follow the atproto label spec: `ver` 1, `neg` omitted when false, the signature
//! over the DAG-CBOR encoding of the label without `sig`, SHA-256, low-S, 64 bytes (r‖s).

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use k256::ecdsa::signature::{Signer, Verifier};
use k256::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// A label. Fields are declared in DAG-CBOR map-key order (every key is three bytes, so the order
/// is plain byte order), which keeps the encoding canonical whatever the serializer does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    /// Version of a specific record, when the subject is a record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cid: Option<String>,
    /// Creation time, RFC 3339.
    pub cts: String,
    /// Expiry, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<String>,
    /// A negation withdraws an earlier label with the same `src`, `uri` and `val`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub neg: bool,
    /// The signature; absent in the signed form.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    pub sig: Option<Vec<u8>>,
    /// The labeler's DID.
    pub src: String,
    /// The subject: a DID or an `at://` URI.
    pub uri: String,
    /// The label value.
    pub val: String,
    /// Label format version, always 1.
    pub ver: i64,
}

/// Why a label could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("DAG-CBOR encoding failed: {0}")]
pub struct EncodeError(String);

impl Label {
    /// A new unsigned label dated now.
    pub fn new(src: &str, uri: &str, val: &str, neg: bool) -> Self {
        Self {
            cid: None,
            cts: atmos_lexicons::Datetime::now().as_str().to_string(),
            exp: None,
            neg,
            sig: None,
            src: src.into(),
            uri: uri.into(),
            val: val.into(),
            ver: 1,
        }
    }

    /// The bytes that are signed: DAG-CBOR of the label without `sig`.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let unsigned = Label {
            sig: None,
            ..self.clone()
        };
        serde_ipld_dagcbor::to_vec(&unsigned).map_err(|e| EncodeError(e.to_string()))
    }

    /// Signs with `key` (SHA-256, RFC 6979, low-S), replacing any earlier signature.
    pub fn sign(&mut self, key: &SigningKey) -> Result<(), EncodeError> {
        let bytes = self.signing_bytes()?;
        let sig: Signature = key.sign(&bytes);
        let sig = sig.normalize_s().unwrap_or(sig);
        self.sig = Some(sig.to_bytes().to_vec());
        Ok(())
    }

    /// Checks the signature against `key`; high-S signatures are refused, as atproto requires.
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        let Some(raw) = &self.sig else { return false };
        let Ok(sig) = Signature::from_slice(raw) else {
            return false;
        };
        if sig.normalize_s().is_some() {
            return false;
        }
        match self.signing_bytes() {
            Ok(bytes) => key.verify(&bytes, &sig).is_ok(),
            Err(_) => false,
        }
    }

    /// JSON wire form (`com.atproto.label.defs#label`): `sig` as `{"$bytes": base64}`.
    /// atrium-api's label type writes `sig` as a plain array, which clients cannot verify.
    pub fn json(&self) -> JsonLabel<'_> {
        JsonLabel {
            ver: self.ver,
            src: &self.src,
            uri: &self.uri,
            cid: self.cid.as_deref(),
            val: &self.val,
            neg: self.neg,
            cts: &self.cts,
            exp: self.exp.as_deref(),
            sig: self.sig.as_deref().map(DollarBytes),
        }
    }

    /// [`Label::json`] as a `serde_json::Value`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.json()).unwrap_or_default()
    }
}

/// A label in its JSON wire form, borrowing from a [`Label`].
#[derive(Debug, Serialize)]
pub struct JsonLabel<'a> {
    ver: i64,
    src: &'a str,
    uri: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cid: Option<&'a str>,
    val: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    neg: bool,
    cts: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sig: Option<DollarBytes<'a>>,
}

/// Bytes in atproto's JSON form: `{"$bytes": base64 without padding}`.
#[derive(Debug)]
pub struct DollarBytes<'a>(&'a [u8]);

impl Serialize for DollarBytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("$bytes", &STANDARD_NO_PAD.encode(self.0))?;
        m.end()
    }
}

/// A label value this labeler publishes: 1–128 lowercase letters, digits, `-` (and `!` for the
/// reserved system values).
pub fn valid_value(val: &str) -> bool {
    !val.is_empty()
        && val.len() <= 128
        && val
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'!')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_slice(&[7u8; 32]).expect("valid scalar")
    }

    #[test]
    fn signs_and_verifies_and_detects_tampering() {
        let mut l = Label::new("did:web:labeler.test", "did:plc:abc", "relay-member", false);
        l.sign(&key()).expect("signs");
        assert_eq!(l.sig.as_ref().map(Vec::len), Some(64));
        let vk = *key().verifying_key();
        assert!(l.verify(&vk));
        let mut tampered = l.clone();
        tampered.val = "clean-sender".into();
        assert!(!tampered.verify(&vk));
        let mut negated = l.clone();
        negated.neg = true;
        assert!(!negated.verify(&vk));
    }

    #[test]
    fn canonical_encoding_omits_false_neg_and_sig() {
        let l = Label::new("did:web:x", "did:plc:y", "v", false);
        let bytes = l.signing_bytes().expect("encodes");
        // A map of six entries (cts, src, uri, val, ver... no neg/sig/cid/exp): 0xa5 = map(5).
        assert_eq!(bytes[0], 0xa5);
        let decoded: serde_json::Value = serde_ipld_dagcbor::from_slice(&bytes).expect("decodes");
        let keys: Vec<_> = decoded.as_object().expect("map").keys().cloned().collect();
        assert_eq!(keys, ["cts", "src", "uri", "val", "ver"]);
        let mut n = l.clone();
        n.neg = true;
        assert_eq!(n.signing_bytes().expect("encodes")[0], 0xa6);
    }

    #[test]
    fn json_form_uses_dollar_bytes() {
        let mut l = Label::new("did:web:x", "did:plc:y", "v", true);
        l.sign(&key()).expect("signs");
        let j = l.to_json();
        assert_eq!(j["neg"], true);
        let b64 = j["sig"]["$bytes"].as_str().expect("$bytes");
        assert_eq!(STANDARD_NO_PAD.decode(b64).expect("base64").len(), 64);
    }
}
